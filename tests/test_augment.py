import numpy as np
import pytest

from wakeword.audio.mixing import coloured_noise
from wakeword.dataset.augment import AugmentConfig, augment_window, place


def test_place_positive_never_wraps_or_cuts():
    rng = np.random.default_rng(0)
    clip = np.ones(9000, np.float32)
    for _ in range(50):
        w = place(clip, 16000, rng, label=1)
        nz = np.flatnonzero(w)
        assert len(nz) == 9000 and nz[-1] - nz[0] == 8999  # whole word, contiguous: no wrap-around


def test_augment_draws_are_per_sample_and_reproducible():
    clip = np.sin(np.arange(8000) / 7).astype(np.float32) * 0.5
    noises = [coloured_noise("pink", 32000, np.random.default_rng(3))]
    cfg = AugmentConfig()
    a = augment_window(clip, 1, 16000, cfg, np.random.default_rng([0, 0, 1]), noises, [])
    b = augment_window(clip, 1, 16000, cfg, np.random.default_rng([0, 0, 2]), noises, [])
    a2 = augment_window(clip, 1, 16000, cfg, np.random.default_rng([0, 0, 1]), noises, [])
    assert a.shape == (16000,) and not np.allclose(a, b)
    assert np.array_equal(a, a2)
    assert np.abs(a).max() <= 1.0


def _vowel(f0: float, formant_hz: float, sr: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """A pulse train at ``f0`` through one resonance at ``formant_hz``: a crude sustained vowel."""
    from scipy.signal import lfilter

    n = int(sr * seconds)
    pulses = np.zeros(n)
    pulses[:: int(sr / f0)] = 1.0
    r, w = 0.97, 2 * np.pi * formant_hz / sr
    return lfilter([1.0], [1, -2 * r * np.cos(w), r * r], pulses).astype(np.float32) * 0.05


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.abs(np.fft.rfft(x[2000:-2000] * np.hanning(len(x) - 4000)))
    return np.fft.rfftfreq(len(x) - 4000, 1 / 16000), s


def test_formant_shift_moves_the_envelope_and_keeps_pitch_length_and_level():
    from wakeword.audio.mixing import formant_shift, power

    x = _vowel(125.0, 800.0)
    assert np.array_equal(formant_shift(x, 1.0), x)
    for factor in (0.82, 1.22):
        y = formant_shift(x, factor)
        assert len(y) == len(x) and abs(power(y) / power(x) - 1) < 1e-3
        f, s_in = _spectrum(x)
        _, s_out = _spectrum(y)
        band = (f > 300) & (f < 2000)
        peak_in, peak_out = f[band][np.argmax(s_in[band])], f[band][np.argmax(s_out[band])]
        # the strongest harmonic follows the resonance (to the nearest harmonic, 125 Hz apart)
        assert abs(peak_out - 800.0 * factor) <= 130.0 and abs(peak_in - 800.0) <= 65.0
        # the pitch stays: energy sits on the same 125 Hz harmonics
        harm = np.isclose((f / 125.0) % 1.0, 0.0, atol=0.02) | np.isclose((f / 125.0) % 1.0, 1.0, atol=0.02)
        assert s_out[band & harm].sum() / s_out[band].sum() > 0.5


def test_formant_prob_zero_replays_and_one_changes_every_window():
    from wakeword.dataset.augment import AugmentConfig, augment_window

    clip = _vowel(110.0, 700.0, seconds=0.8)
    base = AugmentConfig(background_prob=0.0, rir_prob=0.0, channel_prob=0.0, phone_prob=0.0, speed_prob=0.0)
    for i in range(4):
        a = augment_window(clip, 1, 16000, base, np.random.default_rng([1, 0, i]), [], [])
        b = augment_window(clip, 1, 16000, AugmentConfig(**{**base.to_dict(), "formant_prob": 0.0}),
                           np.random.default_rng([1, 0, i]), [], [])
        c = augment_window(clip, 1, 16000, AugmentConfig(**{**base.to_dict(), "formant_prob": 1.0}),
                           np.random.default_rng([1, 0, i]), [], [])
        assert np.array_equal(a, b) and not np.allclose(a, c, atol=1e-3)
    with pytest.raises(ValueError, match="formant_range"):
        AugmentConfig(formant_range=(1.2, 0.9))


def test_background_folders_expand_home_and_name_a_missing_one(tmp_path, monkeypatch):
    import soundfile as sf

    from wakeword.dataset.torch_data import load_dir_audio

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "bg" / "sub").mkdir(parents=True)
    tone = (0.1 * np.sin(np.arange(16000 * 3) * 0.05)).astype(np.float32)
    sf.write(tmp_path / "bg" / "sub" / "a.wav", tone, 16000)
    sf.write(tmp_path / "bg" / "b.flac", tone[:16000], 16000)
    got = load_dir_audio(("~/bg",), max_seconds=2.0)
    assert sorted(len(x) for x in got) == [16000, 32000]  # both files, the longer one cut at max_seconds
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dir_audio(("~/nowhere",))


def test_real_babble_sums_talkers_from_their_folders_into_long_backgrounds(tmp_path):
    import soundfile as sf
    from benchmarks.real_babble import main

    for name, freq in (("a", 0.03), ("b", 0.11)):
        d = tmp_path / "packs" / name
        d.mkdir(parents=True)
        for k in range(3):
            sf.write(d / f"{k}.wav", (0.2 * np.sin(np.arange(8000 + 1000 * k) * freq)).astype(np.float32), 16000)
    (tmp_path / "packs" / "empty").mkdir()
    out = tmp_path / "babble"
    assert main([str(tmp_path / "packs" / "*"), "--out", str(out), "--files", "3", "--seconds", "2"]) == 0
    files = sorted(out.glob("*.flac"))
    assert len(files) == 3
    for f in files:
        x, sr = sf.read(f)
        assert sr == 16000 and len(x) == 32000
        assert abs(np.max(np.abs(x)) - 0.5) < 1e-3  # peak-normalised
        assert np.mean(np.abs(x) > 1e-3) > 0.5  # talk most of the time, with short pauses
    assert main([str(tmp_path / "nowhere"), "--out", str(out)]) == 2
