import numpy as np
import pytest
import torch

from wakeword.features.logmel import FeatureConfig
from wakeword.models import MobileNetV3, StudentConfig, count_macs, count_params
from wakeword.models.kws import WakeWordModel
from wakeword.training.checkpoint import load_checkpoint, load_model, save_checkpoint


@pytest.mark.parametrize("kw", [{}, {"width": 0.5}, {"depth": 2.0, "kernel": 3}, {"se": False}])
def test_student_shapes_and_knobs(kw):
    m = MobileNetV3(StudentConfig(**kw)).eval()
    x = torch.randn(3, 40, 98)
    logits, feats = m.forward_features(x)
    assert logits.shape == (3,)
    assert len(feats) == len(m.cfg.stages) and all(f.shape[0] == 3 for f in feats)
    assert count_params(m) > 1000 and count_macs(m, x) > count_params(m)


def test_width_changes_cost():
    x = torch.randn(1, 40, 98)
    small, big = MobileNetV3(StudentConfig(width=0.5)), MobileNetV3(StudentConfig(width=1.5))
    assert count_params(small) < count_params(big) and count_macs(small, x) < count_macs(big, x)


@pytest.mark.parametrize("how", ["level", "cmn"])
def test_window_norm_removes_gain_and_channel(how, speech_audio):
    from conftest import responsive_model

    m = responsive_model(speech_audio, window_norm=how)
    plain = responsive_model(speech_audio)
    rng = np.random.default_rng(0)  # a noise floor well above the log floor (1e-6), as in any recording
    a = torch.from_numpy((speech_audio[:16000] + 0.01 * rng.standard_normal(16000)).astype(np.float32)[None])
    # a gain is a constant added to the log-mel: both normalisations remove it, the plain model does not
    assert torch.allclose(m(a), m(a * 0.3), atol=5e-3)
    assert not torch.allclose(plain(a), plain(a * 0.3), atol=5e-2)
    x = m.frontend(a)
    tilt = torch.linspace(-3, 3, x.shape[1])[None, :, None]  # a fixed channel colouring, per mel band
    moved = torch.allclose(m.backbone(x), m.backbone(x + tilt), atol=1e-4)
    assert moved == (how == "cmn")  # only "cmn" removes a per-band offset


def test_window_norm_is_validated_and_old_configs_load():
    with pytest.raises(ValueError, match="window_norm"):
        StudentConfig(window_norm="pcen")
    d = StudentConfig().to_dict()
    d.pop("window_norm")  # a checkpoint saved before the option existed
    assert StudentConfig.from_dict(d).window_norm == "none"


def test_student_rejects_wrong_input():
    with pytest.raises(ValueError):
        MobileNetV3()(torch.randn(2, 32, 98))


def test_checkpoint_rebuilds_model(tmp_path):
    feat = FeatureConfig(n_mels=32)
    m = WakeWordModel("mobilenetv3", {"width": 0.75}, feat).eval()
    save_checkpoint(tmp_path / "m.pt", m, {"note": "test"}, metrics={"val_pauc": 0.5})
    m2 = load_model(tmp_path / "m.pt")
    assert m2.feat == feat
    audio = torch.randn(2, feat.window_samples) * 0.1
    assert torch.allclose(m(audio), m2(audio))
    assert load_checkpoint(tmp_path / "m.pt")["config"] == {"note": "test"}


def test_foreign_checkpoint_is_refused(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a wakeword checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "junk.pt")


@pytest.mark.parametrize("window_norm", ["none", "cmn"])
def test_onnx_matches_torch_on_real_audio(tmp_path, speech_audio, window_norm):
    from conftest import responsive_model
    from wakeword.export import OnnxDetector, export_onnx
    from wakeword.inference import Detector

    m = responsive_model(speech_audio, window_norm=window_norm)
    path = export_onnx(m, tmp_path / "m.onnx")
    onnx_scores, _ = OnnxDetector(path).score_track(speech_audio)
    torch_scores, _ = Detector(m).score_track(speech_audio)
    assert onnx_scores.shape == torch_scores.shape
    assert np.abs(onnx_scores - torch_scores).max() < 1e-4
    assert torch_scores.std() > 1e-4
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Slice") < 20  # framing is a few strided slices, not one Slice per frame


def test_onnx_foreign_model_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from wakeword.export import OnnxDetector

    node = helper.make_node("Identity", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="not a wakeword ONNX"):
        OnnxDetector(tmp_path / "foreign.onnx")


def test_int8_export_is_smaller_and_close_to_float(tmp_path, speech_audio, tiny_data):
    from conftest import responsive_model
    from wakeword.export import OnnxDetector, calibration_windows, export_onnx, quantize_int8

    m = responsive_model(speech_audio)
    f = export_onnx(m, tmp_path / "m.onnx")
    cal = calibration_windows(tiny_data, m.feat, n=16)
    assert cal.shape == (16, m.feat.window_samples)
    # Calibration is augmented as the run was trained: a run trained 40 dB quieter calibrates 40 dB quieter.
    quiet = calibration_windows(tiny_data, m.feat, n=16, train={"augment": {"gain_db": [-40.0, -40.0],
                                                                            "phone_prob": 0.0}})
    loud = calibration_windows(tiny_data, m.feat, n=16, train={"augment": {"gain_db": [0.0, 0.0], "phone_prob": 0.0}})
    assert 0 < np.abs(quiet).max() < 0.02 * np.abs(loud).max()
    # Calibrate on the audio being scored, so the check measures quantization error alone.
    n = m.feat.window_samples
    own = np.stack([speech_audio[i:i + n] for i in range(0, len(speech_audio) - n, n // 8)])
    q = quantize_int8(f, tmp_path / "m.int8.onnx", np.concatenate([cal, own]))
    assert q.stat().st_size < 0.8 * f.stat().st_size
    a, _ = OnnxDetector(f).score_track(speech_audio)
    b, _ = OnnxDetector(q).score_track(speech_audio)
    # An untrained net is a hard case for 8 bits (trained demo model: r = 0.95); an unrelated model gives r ~ 0.
    r = np.corrcoef(a, b)[0, 1]
    assert r > 0.7, r
    assert OnnxDetector(q).metadata["quantization"]
    # QOperator format (QLinearConv): smaller still; tracer-shared weights are inlined so it quantizes.
    qo = quantize_int8(f, tmp_path / "m.qop.onnx", np.concatenate([cal, own]), fmt="qoperator")
    assert qo.stat().st_size < q.stat().st_size
    c, _ = OnnxDetector(qo).score_track(speech_audio)
    assert np.corrcoef(a, c)[0, 1] > 0.5
    with pytest.raises(ValueError, match="unknown INT8 format"):
        quantize_int8(f, tmp_path / "x.onnx", cal, fmt="int4")


@pytest.mark.parametrize("window_norm", ["none", "level"])
def test_streaming_onnx_equals_score_track_on_real_audio(tmp_path, speech_audio, window_norm):
    import dataclasses
    import subprocess
    import sys

    import soundfile as sf

    from conftest import REPO, responsive_model
    from wakeword.export import OnnxStreamer, export_streaming_onnx, stream_contract
    from wakeword.inference import Detector

    m = responsive_model(speech_audio, window_norm=window_norm)
    c = stream_contract(m.feat)
    path = export_streaming_onnx(m, tmp_path / "s.onnx")
    assert not m.training  # export must leave the model as it found it (it works on a fused copy)
    st = OnnxStreamer(path)
    online = np.concatenate([st.feed(speech_audio[i:i + 777]) for i in range(0, len(speech_audio), 777)])
    m.feat = dataclasses.replace(m.feat, score_stride=c["stride"])
    offline, _ = Detector(m).score_track(speech_audio)
    assert len(online) == len(offline)
    assert np.abs(online - offline).max() < 1e-4
    # The torch-free example runs the same file.
    wav = tmp_path / "x.wav"
    sf.write(wav, speech_audio, 16000)
    out = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_stream.py"), str(path), str(wav),
                          "--threshold", str(float(np.median(online)))], capture_output=True, text=True)
    assert out.returncode == 0 and "wake word at" in out.stdout, out.stderr


def test_streaming_int8_is_calibrated_on_real_stream_states_and_tracks_float(tmp_path, speech_audio, tiny_data):
    import subprocess
    import sys

    import soundfile as sf

    from conftest import REPO, responsive_model
    from wakeword.export import (
        OnnxStreamer,
        calibration_windows,
        export_streaming_onnx,
        quantize_int8,
        streaming_calibration_feeds,
    )

    m = responsive_model(speech_audio)
    f = export_streaming_onnx(m, tmp_path / "s.onnx")
    cal = np.concatenate([calibration_windows(tiny_data, m.feat, n=8), speech_audio[None, :16000]])
    feeds = streaming_calibration_feeds(f, cal, n_feeds=64)
    assert 0 < len(feeds) <= 64 and set(feeds[0]) == {"audio", "sample_cache", "feature_cache"}
    assert np.abs(feeds[-1]["feature_cache"]).max() > 0  # steady-state caches, not the zero warm-up state
    q = quantize_int8(f, tmp_path / "s.int8.onnx", feeds)
    assert q.stat().st_size < 0.6 * f.stat().st_size
    a = OnnxStreamer(f).feed(speech_audio)
    b = OnnxStreamer(q).feed(speech_audio)
    assert len(a) == len(b) and np.corrcoef(a, b)[0, 1] > 0.7
    wav = tmp_path / "x.wav"  # the torch-free example runs the INT8 streaming file as it is
    sf.write(wav, speech_audio, 16000)
    out = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_stream.py"), str(q), str(wav),
                          "--threshold", str(float(np.median(b)))], capture_output=True, text=True)
    assert out.returncode == 0 and "wake word at" in out.stdout, out.stderr


def test_example_refuses_foreign_models_and_mismatched_audio(tmp_path, speech_audio):
    import subprocess
    import sys

    import soundfile as sf

    from conftest import REPO, responsive_model
    from wakeword.export import export_onnx, export_streaming_onnx

    m = responsive_model(speech_audio)
    stream = export_streaming_onnx(m, tmp_path / "s.onnx")
    window = export_onnx(m, tmp_path / "w.onnx")  # ours, but not the streaming graph the example drives
    wav8k = tmp_path / "x8k.wav"
    sf.write(wav8k, speech_audio[::2], 8000)
    ex = str(REPO / "examples" / "onnx_stream.py")
    r = subprocess.run([sys.executable, ex, str(stream), str(wav8k)], capture_output=True, text=True)
    assert r.returncode != 0 and "8000 Hz" in r.stderr and "16000 Hz" in r.stderr
    r = subprocess.run([sys.executable, ex, str(window), str(wav8k)], capture_output=True, text=True)
    assert r.returncode != 0 and "not a wakeword streaming export" in r.stderr
