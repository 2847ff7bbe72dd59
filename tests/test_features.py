import numpy as np
import soundfile as sf
import torch

from wakeword.audio.io import load_audio
from wakeword.features.logmel import FeatureConfig, LogMel, mel_filterbank, n_frames
from wakeword.features.specaugment import SpecAugment, SpecAugmentConfig


def test_logmel_matches_numpy_reference(speech_audio):
    cfg = FeatureConfig()
    x = speech_audio[:16000]
    mel = LogMel(cfg)(torch.from_numpy(x)[None])[0].numpy()
    n = n_frames(len(x), cfg)
    assert mel.shape == (cfg.n_mels, n)
    win = np.hanning(cfg.n_fft + 1)[:-1]  # periodic Hann
    frames = np.stack([x[i * cfg.hop_length:i * cfg.hop_length + cfg.n_fft] for i in range(n)])
    power = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2
    ref = np.log(power @ mel_filterbank(cfg).T + cfg.log_floor).T
    assert np.allclose(mel, ref, atol=2e-3)


def test_export_mode_front_end_equals_the_stored_one(speech_audio):
    """Export builds frames, DFT and mel filters from ops (nothing big stored, a short graph): same log-mel."""
    for cfg in (FeatureConfig(), FeatureConfig(n_fft=512, hop_length=128, n_mels=32)):
        fe = LogMel(cfg)
        x = torch.from_numpy(speech_audio[: 16000 + 333])[None]
        stored = fe(x)
        fe.dft_in_graph = True
        built = fe(x)
        assert built.shape == stored.shape
        assert torch.allclose(built, stored, atol=1e-3)
        assert np.abs(fe._mel_in_graph(x).numpy() - mel_filterbank(cfg)).max() < 1e-4
        assert torch.equal(fe._frames_in_graph(x), x.unfold(1, cfg.n_fft, cfg.hop_length))


def test_mel_from_file_equals_mel_from_array(tmp_path, speech_audio):
    p = tmp_path / "x.wav"
    sf.write(p, speech_audio, 16000, subtype="FLOAT")
    fe = LogMel()
    a = fe(torch.from_numpy(load_audio(p))[None])
    b = fe(torch.from_numpy(speech_audio)[None])
    assert torch.allclose(a, b)


def test_frames_constants():
    cfg = FeatureConfig()
    assert cfg.window_frames == 1 + (16000 - 400) // 160
    assert np.isclose(cfg.score_hop_s, 0.08)


def test_specaugment_masks_differ_per_sample_and_respect_budget():
    cfg = SpecAugmentConfig(prob=1.0)
    sa = SpecAugment(cfg)
    g = torch.Generator().manual_seed(0)
    m = sa.masks(8, 40, 98, g)
    flat = m.reshape(8, -1)
    assert any(not torch.equal(flat[0], flat[i]) for i in range(1, 8))
    # Time masks are columns masked across all bands; their total width is capped.
    time_masked = m.all(dim=1).sum(dim=1)
    assert int(time_masked.max()) <= int(cfg.max_time_frac * 98)
    # Not every column of any sample is masked: the word cannot be erased.
    assert bool((~m.all(dim=1)).any(dim=1).all())


def test_specaugment_is_identity_in_eval():
    sa = SpecAugment().eval()
    x = torch.randn(2, 40, 98)
    assert torch.equal(sa(x), x)


def test_mel_warp_is_per_sample_and_identity_at_zero():
    x = torch.randn(4, 40, 98)
    same = SpecAugment(SpecAugmentConfig(warp=0.0))
    assert torch.equal(same.warp_mel(x, torch.Generator().manual_seed(0)), x)
    sa = SpecAugment(SpecAugmentConfig(warp=0.15))
    y = sa.warp_mel(x.clone(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(y, x)
    # one linear ramp along the mel axis stays (nearly) linear after a stretch
    ramp = torch.arange(40.0)[None, :, None].expand(2, 40, 5)
    r = sa.warp_mel(ramp, torch.Generator().manual_seed(1))
    assert torch.allclose(r[:, 0], torch.zeros(2, 5)) and not torch.allclose(r[0], r[1])
