"""One contract for every backbone (the student and both teachers), plus teacher-specific checks."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from wakeword.features.logmel import FeatureConfig
from wakeword.models.kws import WakeWordModel
from wakeword.training.checkpoint import load_model, save_checkpoint

FEAT = FeatureConfig()


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """A tiny Wav2Vec2 saved with save_pretrained, to load back through the real from_pretrained path."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from wakeword.models.wav2vec2 import PRESETS

    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("w2v_pretrained")
    Wav2Vec2Model(Wav2Vec2Config(**PRESETS["tiny"])).save_pretrained(d)
    return d


BACKBONES = {
    "mobilenetv3": lambda _: ("mobilenetv3", {"width": 0.5}),
    "conformer": lambda _: ("conformer", {"preset": "tiny"}),
    "wav2vec2-scratch": lambda _: ("wav2vec2", {"preset": "tiny"}),
    "wav2vec2-pretrained": lambda d: ("wav2vec2", {"pretrained": str(d), "freeze_feature_encoder": True}),
    "speech_embedding": lambda _: ("speech_embedding", {"hidden": 16}),
}


@pytest.fixture(params=list(BACKBONES))
def model(request, pretrained_dir):
    if request.param == "speech_embedding":
        pytest.importorskip("openwakeword")  # its feature models are the pretrained weights
    torch.manual_seed(0)
    arch, params = BACKBONES[request.param](pretrained_dir)
    return WakeWordModel(arch, params, FEAT).eval()


def _audio(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / FEAT.sample_rate
    return (0.1 * torch.sin(2 * np.pi * 440 * t) + 0.05 * torch.randn(n, generator=g)).float()


# ------------------------------------------------------------------ the shared contract
def test_forward_features_shapes(model):
    x = model.frontend(torch.stack([_audio(FEAT.window_samples, s) for s in range(3)]))
    x = x[..., :model.window_len]
    logits, feats = model.backbone.forward_features(x)
    assert logits.shape == (3,)
    assert len(feats) == len(model.backbone.feature_dims) >= 2
    for f, c in zip(feats, model.backbone.feature_dims):
        assert f.dim() in (3, 4) and f.shape[0] == 3 and f.shape[1] == c
    assert torch.allclose(model.backbone(x), logits)


def test_score_frames_windows_match_single_windows(model):
    """Every backbone scores the same audio spans: window k starts k * score_stride hops in."""
    audio = _audio(FEAT.window_samples + 5 * FEAT.score_stride * FEAT.hop_length + 77)
    scores = model.score_frames(model.frontend(audio[None])[0])
    assert len(scores) == 6
    span = (FEAT.window_frames - 1) * FEAT.hop_length + FEAT.n_fft
    for k in (0, 5):
        start = k * FEAT.score_stride * FEAT.hop_length
        with torch.no_grad():
            one = torch.sigmoid(model(audio[None, start:start + span]))[0]
        assert abs(float(one) - float(scores[k])) < 1e-4


def test_eval_outputs_do_not_depend_on_the_batch(model):
    a = torch.stack([_audio(FEAT.window_samples, s) for s in range(4)])
    with torch.no_grad():
        assert torch.allclose(model(a)[:1], model(a[:1]), atol=1e-5)


def test_checkpoint_rebuilds_the_model_by_itself(model, tmp_path, pretrained_dir):
    a = torch.stack([_audio(FEAT.window_samples, s) for s in range(2)])
    save_checkpoint(tmp_path / "m.pt", model, {"train": {}}, metrics={"val_pauc": 0.5})
    backup = tmp_path / "moved"
    shutil.move(str(pretrained_dir), backup)  # a rebuilt teacher must not need the pretrained folder
    try:
        again = load_model(tmp_path / "m.pt")
    finally:
        shutil.move(str(backup), pretrained_dir)
    assert again.arch == model.arch and again.input_kind == model.input_kind
    with torch.no_grad():
        assert torch.allclose(again(a), model(a), atol=1e-6)


def test_every_trainable_parameter_gets_a_gradient(model):
    model.train()
    a = torch.stack([_audio(FEAT.window_samples, s) for s in range(4)])
    logits, feats = model.backbone.forward_features(model.frontend(a))
    (logits.sum() + sum(f.mean() for f in feats)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # Wav2Vec2's masked-frame embedding is used only where SpecAugment-style masking hits.
    assert [n for n in missing if "masked_spec_embed" not in n] == []


# ------------------------------------------------------------------ Wav2Vec2 specifics
def test_wav2vec2_loads_pretrained_weights_through_from_pretrained(pretrained_dir):
    from transformers import Wav2Vec2Model

    ref = Wav2Vec2Model.from_pretrained(pretrained_dir)
    m = WakeWordModel("wav2vec2", {"pretrained": str(pretrained_dir)}, FEAT)
    enc = m.backbone.encoder.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(enc[k], v), k
    assert "pretrained" not in m.arch_params and m.arch_params["hf_config"]["hidden_size"] == 32


def test_wav2vec2_freezing_options():
    m = WakeWordModel("wav2vec2", {"preset": "tiny", "freeze_feature_encoder": True, "freeze_layers": 1}, FEAT)
    enc = m.backbone.encoder
    assert not any(p.requires_grad for p in enc.feature_extractor.parameters())
    assert not any(p.requires_grad for p in enc.encoder.layers[0].parameters())
    assert all(p.requires_grad for p in enc.encoder.layers[1].parameters())
    assert all(p.requires_grad for p in m.backbone.classifier.parameters())


@pytest.mark.parametrize("params, message", [
    ({"pretrained": "/nonexistent/folder"}, "cannot load a pretrained Wav2Vec2"),
    ({"preset": "huge"}, "unknown wav2vec2 preset"),
    ({"preset": "tiny", "bogus": 1}, "unknown wav2vec2 parameters"),
    ({"preset": "tiny", "freeze_layers": 9}, "freeze_layers=9"),
])
def test_wav2vec2_bad_parameters_are_clear(params, message):
    with pytest.raises(ValueError, match=message):
        WakeWordModel("wav2vec2", params, FEAT)


# ------------------------------------------------------------------ Conformer specifics
def test_conformer_attention_knows_positions_only_through_relative_offsets():
    from wakeword.models.conformer import RelPosSelfAttention

    torch.manual_seed(0)
    x = torch.randn(1, 12, 16)
    perm = torch.randperm(12)
    att = RelPosSelfAttention(16, 2, max_rel=8, dropout=0.0).eval()
    # All offsets clipped to one embedding: no position information is left, so attention is
    # permutation-equivariant; no absolute position sneaks in anywhere else.
    blind = RelPosSelfAttention(16, 2, max_rel=0, dropout=0.0).eval()
    with torch.no_grad():
        assert torch.allclose(blind(x[:, perm]), blind(x)[:, perm], atol=1e-5)
        assert not torch.allclose(att(x[:, perm]), att(x)[:, perm], atol=1e-3)


def test_conformer_presets_and_bad_input():
    from wakeword.models.conformer import ConformerConfig

    assert ConformerConfig.from_dict({"preset": "small"}).d_model == 96
    assert ConformerConfig.from_dict({"preset": "small", "n_blocks": 2}).n_blocks == 2
    with pytest.raises(ValueError, match="unknown conformer preset"):
        ConformerConfig.from_dict({"preset": "giant"})
    with pytest.raises(ValueError, match="unknown conformer parameters"):
        ConformerConfig.from_dict({"layers": 3})
    m = WakeWordModel("conformer", {"preset": "tiny"}, FEAT)
    with pytest.raises(ValueError, match="expected"):
        m.backbone(torch.zeros(2, 13, 98))


def test_teachers_on_raw_audio_refuse_onnx_export_and_streaming(tmp_path):
    from wakeword.export import export_onnx
    from wakeword.inference import Detector

    m = WakeWordModel("wav2vec2", {"preset": "tiny"}, FEAT).eval()
    with pytest.raises(ValueError, match="teacher on raw audio"):
        export_onnx(m, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="streaming needs a log-mel"):
        Detector(m).stream()


# ------------------------------------------------------------------ speech-embedding specifics
def test_speech_embedding_port_equals_openwakewords_onnx_models():
    """The torch port computes what openWakeWord's own ONNX feature models compute, on the same audio."""
    pytest.importorskip("openwakeword")
    from openwakeword.utils import AudioFeatures

    from wakeword.models.speech_embedding import SpeechEmbedding, default_onnx_dir

    port = SpeechEmbedding.from_onnx(default_onnx_dir()).eval()
    ref = AudioFeatures(inference_framework="onnx")
    audio = _audio(int(1.5 * FEAT.sample_rate), seed=3)
    pcm = (audio.numpy() * 32767).astype(np.int16)
    x = torch.from_numpy(pcm.astype(np.float32) / 32767)[None]
    with torch.no_grad():
        mel = port.melspectrogram(x)[0].numpy()
        emb = port(x)[0].T.numpy()  # (frames, 96)
    ref_mel, ref_emb = ref._get_melspectrogram(pcm), ref._get_embeddings(pcm)
    assert mel.shape == ref_mel.shape and emb.shape == ref_emb.shape == (9, 96)
    assert np.abs(mel - ref_mel).max() < 1e-4
    assert np.abs(emb - ref_emb).max() < 1e-3 * np.abs(ref_emb).max()


def test_speech_embedding_is_frozen_unless_asked_and_rebuilds_without_the_onnx_files(tmp_path):
    pytest.importorskip("openwakeword")
    from wakeword.models.speech_embedding import default_onnx_dir

    src = tmp_path / "onnx"
    src.mkdir()
    for name in ("melspectrogram.onnx", "embedding_model.onnx"):
        shutil.copy(default_onnx_dir() / name, src / name)
    m = WakeWordModel("speech_embedding", {"onnx_dir": str(src), "hidden": 8}, FEAT)
    assert not any(p.requires_grad for p in m.backbone.embedding.parameters())
    assert all(p.requires_grad for n, p in m.named_parameters() if "embedding" not in n)
    assert "onnx_dir" not in m.arch_params  # the checkpoint holds the weights, not a path
    save_checkpoint(tmp_path / "m.pt", m.eval(), {"train": {}}, metrics={"val_pauc": 0.5})
    shutil.rmtree(src)
    again = load_model(tmp_path / "m.pt")
    a = torch.stack([_audio(FEAT.window_samples, s) for s in range(2)])
    with torch.no_grad():
        assert torch.allclose(again(a), m(a), atol=1e-6)
    tuned = WakeWordModel("speech_embedding", {"hidden": 8, "train_embedding": True}, FEAT)
    assert all(p.requires_grad for p in tuned.backbone.embedding.parameters())


@pytest.mark.parametrize("params, message", [
    ({"onnx_dir": "/nonexistent"}, "melspectrogram.onnx"),
    ({"hidden": 0}, "hidden must be"),
    ({"preset": "small"}, "unknown speech_embedding parameters"),
])
def test_speech_embedding_bad_parameters_are_clear(params, message):
    if "onnx_dir" not in params:
        pytest.importorskip("openwakeword")
    with pytest.raises(ValueError, match=message):
        WakeWordModel("speech_embedding", params, FEAT)


def test_speech_embedding_refuses_a_front_end_at_another_sample_rate():
    pytest.importorskip("openwakeword")
    with pytest.raises(ValueError, match="works at 16000 Hz only"):
        WakeWordModel("speech_embedding", {"hidden": 8}, FeatureConfig(sample_rate=8000))


def test_speech_embedding_exports_window_and_streaming_onnx_that_equal_torch(tmp_path):
    """The speech-embedding detector ships like a student: a window graph and a streaming graph (one
    embedding per 80 ms call, as openWakeWord runs it) whose scores equal the checkpoint's on a track."""
    pytest.importorskip("openwakeword")
    import subprocess
    import sys

    import soundfile as sf

    from conftest import REPO
    from wakeword.export import (
        OnnxDetector,
        OnnxStreamer,
        export_onnx,
        export_streaming_onnx,
        model_stream_contract,
    )
    from wakeword.inference import Detector

    torch.manual_seed(0)
    m = WakeWordModel("speech_embedding", {"hidden": 16}, FEAT).eval()
    audio = _audio(3 * FEAT.sample_rate + 555, seed=5).numpy()
    ref, _ = Detector(m).score_track(audio)
    window = OnnxDetector(export_onnx(m, tmp_path / "se.onnx"))
    got, _ = window.score_track(audio)
    assert len(got) == len(ref) and np.abs(got - ref).max() < 1e-4
    path = export_streaming_onnx(m, tmp_path / "se.stream.onnx")
    c = model_stream_contract(m)
    assert set(c["caches"]) == {"feature_cache", "embedding_cache"} and c["chunk"] == 1280
    st = OnnxStreamer(path)
    online = np.concatenate([st.feed(audio[i:i + 1000]) for i in range(0, len(audio), 1000)])
    n = len(ref) - c["first_window"]
    assert len(online) >= n > 0
    assert np.abs(online[:n] - ref[c["first_window"]:]).max() < 1e-4
    wav = tmp_path / "x.wav"
    sf.write(wav, audio, FEAT.sample_rate)
    out = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_stream.py"), str(path), str(wav),
                          "--threshold", str(float(np.median(online)))], capture_output=True, text=True)
    assert out.returncode == 0 and "wake word at" in out.stdout, out.stderr


def test_speech_embedding_embeddings_depend_only_on_their_own_audio():
    """The 80 dB floor is per embedding: a loud sound elsewhere in the track leaves an embedding unchanged."""
    pytest.importorskip("openwakeword")
    from wakeword.models.speech_embedding import SpeechEmbedding, default_onnx_dir

    emb = SpeechEmbedding.from_onnx(default_onnx_dir()).eval()
    quiet = 1e-4 * _audio(2 * FEAT.sample_rate, seed=7)
    loud = quiet.clone()
    loud[-400:] += 0.9  # only the last embedding covers those samples (mel frames 195-196)
    with torch.no_grad():
        a, b = emb(quiet[None])[0], emb(loud[None])[0]
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1], atol=1e-3)


def test_frozen_speech_embedding_runs_through_onnxruntime_with_the_same_numbers():
    """A frozen embedding computes on onnxruntime (faster); it must equal the torch network, and a trainable
    one (weights that change) must stay in torch."""
    pytest.importorskip("openwakeword")
    from wakeword.models.speech_embedding import _ORT_SESSIONS, SpeechEmbedding, default_onnx_dir

    emb = SpeechEmbedding.from_onnx(default_onnx_dir()).eval()
    frames = emb.melspectrogram(_audio(FEAT.sample_rate, seed=2)[None], floor=False).unfold(1, 76, 8)
    frames = frames.transpose(2, 3).reshape(-1, 76, 32)
    with torch.no_grad():
        ref = emb._embed_torch(frames)
        assert emb._ort_embed(frames) is None and emb not in _ORT_SESSIONS  # trainable weights: torch only
        emb.requires_grad_(False)
        fast = emb.embed_frames(frames)
    assert emb in _ORT_SESSIONS
    assert torch.allclose(fast, ref, atol=1e-4 * float(ref.abs().max()))
    emb.load_state_dict({k: v * 0.5 if k.startswith("net.0") else v for k, v in emb.state_dict().items()})
    assert emb not in _ORT_SESSIONS  # new weights drop the snapshot
    with torch.no_grad():
        assert torch.allclose(emb.embed_frames(frames), emb._embed_torch(frames), atol=1e-4 * float(ref.abs().max()))


def test_speech_embedding_macs_count_every_embedding_of_a_window():
    """A 1 s window runs the embedding network 3 times (folded into the batch); a streaming call once."""
    pytest.importorskip("openwakeword")
    from wakeword.models.registry import count_macs

    m = WakeWordModel("speech_embedding", {"hidden": 16}, FEAT)
    one = count_macs(m.backbone.embedding.net, torch.zeros(1, 1, 76, 32))
    window = count_macs(m.backbone, m.frontend(torch.zeros(1, FEAT.window_samples)))
    step, _, example = m.backbone.stream_step()
    assert window - count_macs(step, example) == 2 * one and one > 40e6


def test_speech_embedding_streams_in_torch_with_the_track_scores():
    pytest.importorskip("openwakeword")
    from wakeword.inference import Detector

    torch.manual_seed(0)
    det = Detector(WakeWordModel("speech_embedding", {"hidden": 16}, FEAT).eval())
    audio = _audio(3 * FEAT.sample_rate, seed=9).numpy()
    ref, _ = det.score_track(audio)
    st = det.stream()
    online = np.concatenate([st.feed(audio[i:i + 700]) for i in range(0, len(audio), 700)])
    k = st.contract["first_window"]
    assert len(online) >= len(ref) - k > 0
    assert np.abs(online[:len(ref) - k] - ref[k:]).max() < 1e-5
