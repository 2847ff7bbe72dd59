"""The microWakeWord / ESPHome path: the micro front end, the streaming student, and its int8 .tflite export.

References: pymicro-wakeword 2.5.0 (microWakeWord's desktop runtime: its front end and its own model loader,
``MicroWakeWord.from_config``) and the models it bundles (the manifest schema).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from wakeword.features.micro import MICRO_HOP, MICRO_WINDOW, micro_features, to_pcm16
from wakeword.models.kws import WakeWordModel
from wakeword.models.mixednet import MixedNetConfig
from wakeword.training.fit import TrainConfig

SMALL = {"first_channels": 16, "kernels": [[3], [3, 5], [7]], "channels": [24, 24, 24]}


def _speech(text: str) -> np.ndarray:
    from wakeword.audio.tts import EspeakBackend, Prosody

    b = EspeakBackend()
    return b.synthesize(text, b.voices()[0], Prosody())


def test_micro_features_equal_pymicro_wakeword_front_end(speech_audio):
    """Our front end gives pymicro-wakeword's frames (its MicroWakeWordFeatures, fed as `wakeword bench` feeds it)."""
    from pymicro_wakeword import MicroWakeWordFeatures

    audio = speech_audio[: 16000 * 2]
    ref = np.concatenate([f.reshape(1, -1) for f in MicroWakeWordFeatures().process_streaming(
        to_pcm16(audio).tobytes())]).T
    ours = micro_features(audio)
    assert ours.shape == (40, 1 + (len(audio) - MICRO_WINDOW) // MICRO_HOP) == ref.shape
    np.testing.assert_array_equal(ours, ref.astype(np.float32))
    assert 0.0 <= ours.min() and ours.max() <= 26.0 and ours.std() > 1.0  # the range the int8 input covers


def test_mixednet_window_equals_track_and_config_resolves():
    """A window's logit equals the track pass's for that window (the streaming model's basis), and the train
    config gives the micro front end with exactly the network's window and one score per 30 ms call."""
    cfg = TrainConfig(arch="mixednet", model=SMALL)
    feat = cfg.feature_config()
    net = MixedNetConfig.from_dict(SMALL)
    assert feat.frontend == "micro" and feat.score_stride == net.stride == 3
    assert feat.window_frames == net.window_frames == 3 * (1 + 2 + 4 + 6)
    torch.manual_seed(0)
    model = WakeWordModel("mixednet", SMALL, feat).eval()
    x = torch.rand(1, 40, feat.window_frames + 3 * 7) * 26
    windows = x.unfold(-1, feat.window_frames, 3)[0].permute(1, 0, 2)
    with torch.no_grad():
        per_window = model.backbone(windows)
        track = model.backbone.track_logits(x)[0]
    assert len(track) == len(per_window) == 8
    torch.testing.assert_close(track, per_window, atol=1e-5, rtol=1e-5)
    # a change before a window leaves it alone (causal, finite receptive field); inside it, it does not
    y = x.clone()
    y[..., :3] += 5.0
    with torch.no_grad():
        t2 = model.backbone.track_logits(y)[0]
    torch.testing.assert_close(t2[1:], track[1:], atol=1e-6, rtol=0)
    assert abs(float(t2[0] - track[0])) > 1e-4


def _tflite_python():
    from wakeword.mww_export import ExportError, tflite_python

    try:
        return tflite_python()
    except ExportError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def micro_export(tiny_data, tmp_path_factory):
    """A mixednet trained a few steps by the one fit() on the tiny data build, exported through the CLI."""
    from wakeword.cli import main
    from wakeword.training.fit import fit

    _tflite_python()
    run = tmp_path_factory.mktemp("micro_run")
    fit(TrainConfig(arch="mixednet", model=SMALL, epochs=3, steps_per_epoch=8, batch_size=16, lr=1e-2), tiny_data,
        run, progress=False)
    out = tmp_path_factory.mktemp("micro_export")
    assert main(["-q", "export", "--format", "microwakeword", "--model", str(run / "best.pt"), "--out", str(out),
                 "--author", "tests", "--website", "https://example.org/computer"]) == 0
    return run, out


def test_export_manifest_matches_the_bundled_schema(micro_export):
    import pymicro_wakeword

    from wakeword.training.checkpoint import load_checkpoint

    run, out = micro_export
    manifest = json.loads((out / "computer.json").read_text())
    bundled = json.loads((Path(pymicro_wakeword.__file__).parent / "models" / "okay_nabu.json").read_text())
    assert set(manifest) == set(bundled) and set(manifest["micro"]) == set(bundled["micro"])
    assert manifest["type"] == "micro" and manifest["version"] == 2 and manifest["wake_word"] == "computer"
    assert manifest["model"] == "computer.tflite" and (out / manifest["model"]).is_file()
    assert manifest["author"] == "tests" and manifest["website"] == "https://example.org/computer"
    m = manifest["micro"]
    threshold = load_checkpoint(run / "best.pt")["threshold"]
    assert m["probability_cutoff"] == pytest.approx(threshold, abs=1e-4)
    assert m["feature_step_size"] == 10 and m["sliding_window_size"] == 1
    assert m["minimum_esphome_version"] == bundled["micro"]["minimum_esphome_version"]
    report = json.loads((out / "export_report.json").read_text())
    assert m["tensor_arena_size"] >= report["arena_bytes"] > 0  # measured by TFLite Micro, with headroom
    assert report["bytes"] == (out / "computer.tflite").stat().st_size <= 100 * 1024


def test_export_is_int8_streaming_in_esphome_ops(micro_export):
    from wakeword.mww_export import ESPHOME_OPS

    _, out = micro_export
    report = json.loads((out / "export_report.json").read_text())
    assert report["input"] == {"shape": [1, 3, 40], "dtype": "int8", "scale": pytest.approx(26 / 255, rel=1e-4),
                               "zero_point": -128}  # what ESPHome's fixed feature conversion feeds
    assert report["output"]["dtype"] == "uint8" and report["output"]["shape"] == [1, 1]
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"} <= set(report["ops"]) <= ESPHOME_OPS
    assert report["float_graph_vs_torch_max_abs"] < 1e-4  # the weights went over exactly
    # TFLite Micro (ESPHome's runtime) runs the file with its variables and agrees with TFLite to a few uint8 steps
    # (reference vs optimised int8 kernels round differently)
    micro = report["tflite_micro_vs_tflite"]
    assert micro["calls"] > 20 and micro["max_abs_uint8"] <= 8


def test_pymicro_wakeword_scores_match_the_torch_model(micro_export):
    """The .tflite, loaded by pymicro-wakeword from its manifest and fed by its own front end, streams the torch
    model's scores. int8 weights and activations (scale ~1/256 at the output) allow a few hundredths at most; a
    model that lost its state (or a misaligned one) would be off by far more than that."""
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

    from wakeword.training.checkpoint import load_model

    run, out = micro_export
    model = load_model(run / "best.pt")
    silence = np.zeros(8000, np.float32)
    audio = np.concatenate([silence, _speech("hello there"), silence, _speech("computer"), silence,
                            _speech("turn on the computer please"), silence])
    manifest = json.loads((out / "computer.json").read_text())
    mww = MicroWakeWord.from_config(out / "computer.json")
    got = []
    for i, frame in enumerate(MicroWakeWordFeatures().process_streaming(to_pcm16(audio).tobytes())):
        p = mww.process_streaming_prob(frame)
        if (i + 1) % mww.stride == 0:
            got.append(p)
    got = np.array(got)
    assert mww.stride == 3 and manifest["micro"]["sliding_window_size"] == 1
    with torch.no_grad():
        ref = model.score_frames(model.frontend(torch.from_numpy(audio)[None])[0]).numpy()
    steps = model.backbone.cfg.window_steps
    got = got[steps - 1:][: len(ref)]  # call m covers the window that ends with its frames
    assert len(got) == len(ref) > 50
    diff = np.abs(got - ref)
    assert np.median(diff) < 0.01 and diff.max() < 0.06, (np.median(diff), diff.max())
    assert ref.max() - ref.min() > 0.1  # the scores move, so agreement is not trivial
    shifted = np.abs(got[3:] - ref[:-3])  # the same scores 90 ms off: what a misalignment would give
    assert np.mean(diff) < np.mean(shifted)


def test_streaming_in_chunks_equals_score_track(speech_audio):
    """`Detector.stream()` of a micro front-end model keeps one front end across chunks: its scores equal the
    whole-track scores (a front end restarted per chunk would not give them)."""
    from wakeword.inference import Detector

    cfg = TrainConfig(arch="mixednet", model=SMALL)
    torch.manual_seed(0)
    det = Detector(WakeWordModel("mixednet", SMALL, cfg.feature_config()))
    audio = speech_audio[: 16000 * 3]
    ref, _ = det.score_track(audio)
    st = det.stream()
    got = np.concatenate([st.feed(audio[i:i + 1000]) for i in range(0, len(audio), 1000)])
    assert len(got) == len(ref) > 20
    np.testing.assert_allclose(got, ref, atol=1e-5)
