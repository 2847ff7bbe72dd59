"""`wakeword bench`: one protocol for several detectors (ours in three runtimes, openWakeWord)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wakeword.audio.mixing import power
from wakeword.evaluation.bench import BenchConfig, active_level, add_noise, clip_seed, prepare_set, run_bench
from wakeword.evaluation.detectors import load_detector, same_phrase
from wakeword.evaluation.evaluate import EvalSet

SR = 16000


class EnergyDetector:
    """A detector written for this test (not one of the project's): score 1 for an 80 ms hop whose
    RMS exceeds 0.1, else 0. Its events are therefore known exactly."""

    name, kind, phrase = "energy", "test", None
    sample_rate, hop_s, first_end_s, default_threshold = SR, 0.08, 0.08, 0.5

    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1

    def process(self, audio):
        n = int(self.hop_s * SR)
        k = len(audio) // n
        rms = np.sqrt(np.mean(audio[: k * n].reshape(k, n) ** 2, axis=1)) if k else np.zeros(0)
        return (rms > 0.1).astype(np.float32)


def _write(path: Path, audio: np.ndarray) -> str:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR)
    return str(path)


def test_active_level_ignores_silence_and_pauses():
    t = np.arange(SR // 2) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    padded = np.concatenate([np.zeros(2 * SR, np.float32), tone, np.zeros(SR, np.float32), tone])
    assert active_level(padded) == pytest.approx(power(tone), rel=0.02)
    assert power(padded) < 0.3 * power(tone)  # the plain mean would be dragged down by the silence
    assert active_level(np.zeros(SR, np.float32)) == 0.0


def test_noise_is_mixed_at_the_asked_snr_and_seeded_by_clip_path(speech_audio):
    rng = np.random.default_rng(1)
    noise = [rng.standard_normal(3 * SR).astype(np.float32), 0.01 * rng.standard_normal(SR // 2).astype(np.float32)]
    clip = np.concatenate([np.zeros(SR, np.float32), speech_audio, np.zeros(SR, np.float32)])
    for snr in (0.0, 10.0, 20.0):
        for seed in (1, 2, 3):
            noisy = add_noise(clip, noise, snr, seed)
            added = noisy - clip
            assert 10 * np.log10(active_level(clip) / power(added)) == pytest.approx(snr, abs=1e-3)
    a = add_noise(clip, noise, 10.0, clip_seed("/x/data/real/set/a.flac"))
    assert np.array_equal(a, add_noise(clip, noise, 10.0, clip_seed("/elsewhere/data/real/set/a.flac")))
    assert not np.array_equal(a, add_noise(clip, noise, 10.0, clip_seed("/x/data/real/set/b.flac")))


def test_false_accepts_are_counted_once_per_excursion_and_blamed_on_their_file(tmp_path):
    quiet = np.zeros(3 * SR, np.float32)
    loud = np.zeros(6 * SR, np.float32)
    loud[: int(0.16 * SR)] = 0.5  # a burst in the first two hops after the clip boundary ...
    loud[4 * SR: 4 * SR + SR // 2] = 0.5  # ... and another 4 s later: two events
    files = [_write(tmp_path / "neg" / f"{i}_{n}.wav", a) for i, (n, a) in
             enumerate([("quiet", quiet), ("loud", loud), ("quiet2", quiet), ("loud2", loud)])]
    pos = [_write(tmp_path / "pos" / "p.wav", loud[: 2 * SR])]
    det = EnergyDetector()
    cfg = BenchConfig(stream_s=8.0)  # the second loud file starts a new stream
    rep = run_bench([det], [EvalSet("toy", tuple(pos), tuple(files))], cfg, tmp_path / "out", progress=False)
    r = rep["sets"]["toy"]["detectors"]["energy"]
    hours = (2 * 3 + 2 * 6) / 3600
    assert r["negative_hours"] == pytest.approx(hours, rel=0.02)
    assert r["fa_per_hour_at_default"] == pytest.approx(4 / hours, rel=0.02)
    assert {s["file"]: s["false_accepts"] for s in r["top_false_accept_sources"]} == {files[1]: 2, files[3]: 2}
    assert r["n_positive"] == 1 and r["frr_at_default"] == 0.0
    from wakeword.evaluation.bench import prepare_set, score_detector

    sc, _ = score_detector(EnergyDetector(), prepare_set(EvalSet("toy", tuple(pos), tuple(files)), cfg, False), cfg,
                           False)
    assert sc.neg_clip_scores.tolist() == [0.0, 1.0, 0.0, 1.0]  # each burst is scored in its own clip
    assert [p for p in sc.clip_places] == [(0, 0.0), (0, 3.0), (1, 0.0), (1, 3.0)]
    assert det.resets == 1 + 2  # fresh state per positive clip and per negative stream
    again = EnergyDetector()  # a killed or repeated bench reuses the scores it kept for this detector
    assert run_bench([again], [EvalSet("toy", tuple(pos), tuple(files))], cfg, tmp_path / "out",
                     progress=False)["sets"]["toy"]["detectors"]["energy"] == r and again.resets == 0
    other = EnergyDetector()  # another protocol (a different refractory period) scores again
    run_bench([other], [EvalSet("toy", tuple(pos), tuple(files))], BenchConfig(stream_s=8.0, refractory_s=0.5),
              tmp_path / "out", progress=False)
    assert other.resets == 3
    assert r["cpu_s_per_audio_hour"] > 0
    assert (tmp_path / "out" / "bench.md").read_text().count("| energy |") == 1
    assert (tmp_path / "out" / "det_toy.png").stat().st_size > 0


def test_project_detectors_agree_across_runtimes(tiny_run, tiny_data, tmp_path):
    from wakeword.export import export_model

    ck = tiny_run / "best.pt"
    export_model(ck, tmp_path / "m.onnx", streaming=True, progress=False)
    dets = [load_detector(f"torch={ck}"), load_detector(str(tmp_path / "m.onnx")),
            load_detector(str(tmp_path / "m.stream.onnx"))]
    assert [d.kind for d in dets] == ["torch", "onnx", "onnx-streaming"]
    assert all(d.phrase == "computer" for d in dets)  # read from the training data / export metadata
    split = EvalSet.from_split(tiny_data, "test")
    s = EvalSet("tiny test", split.positives, split.negatives, phrase="Computer!")
    rep = run_bench(dets, [s], BenchConfig(), tmp_path / "out", progress=False)
    res = rep["sets"]["tiny test"]["detectors"]
    t, o, st = res["torch"], res["m.onnx"], res["m.stream.onnx"]
    assert t["n_positive"] == o["n_positive"] == st["n_positive"] == len(split.positives)
    assert o["pauc"] == pytest.approx(t["pauc"], abs=0.02)  # the same windows, float32 vs onnxruntime
    assert o["negative_hours"] == pytest.approx(t["negative_hours"])
    assert 0 <= st["pauc"] <= 1 and st["cpu_s_per_audio_hour"] > 0
    saved = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(saved["sets"]["tiny test"]["detectors"]) == {"torch", "m.onnx", "m.stream.onnx"}
    assert "det_plot" in saved["sets"]["tiny test"]


def test_detectors_of_another_phrase_skip_the_positives(tiny_run, tiny_data, tmp_path):
    split = EvalSet.from_split(tiny_data, "test")
    s = EvalSet("other", split.positives, split.negatives[:5], phrase="hey jarvis")
    rep = run_bench([load_detector(str(tiny_run / "best.pt"))], [s], BenchConfig(), tmp_path, progress=False)
    r = rep["sets"]["other"]["detectors"]["best.pt"]
    assert r["n_positive"] == 0 and "pauc" not in r and r["fa_per_hour_at_default"] >= 0
    assert "| best.pt | 0 |" in (tmp_path / "bench.md").read_text()
    assert same_phrase("Hey, Jarvis", "hey jarvis") and same_phrase(None, "x") and not same_phrase("a", "b")


def test_noisy_bench_gives_every_detector_the_same_audio(tmp_path, speech_audio):
    noise = [_write(tmp_path / "noise" / "n.wav", np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1)]
    pos = [_write(tmp_path / "pos" / "p.wav", speech_audio)]
    neg = [_write(tmp_path / "neg" / "n.wav", speech_audio[::-1].copy())]
    s = EvalSet("noisy", tuple(pos), tuple(neg), tuple(noise))
    a, b = prepare_set(s, BenchConfig(snr_db=5.0), False), prepare_set(s, BenchConfig(snr_db=5.0), False)
    assert np.array_equal(a.positives[0][1], b.positives[0][1]) and np.array_equal(a.negatives[0][1], b.negatives[0][1])
    clean = prepare_set(s, BenchConfig(), False)
    from wakeword.evaluation.scoring import POSITIVE_PAD_S

    lead = int(POSITIVE_PAD_S * SR)  # the protocol's lead-in gets noise too
    assert np.all(clean.positives[0][1][:lead] == 0) and np.any(a.positives[0][1][:lead] != 0)
    with pytest.raises(ValueError, match="no noise"):
        prepare_set(EvalSet("x", tuple(pos), tuple(neg)), BenchConfig(snr_db=5.0), False)


def test_bad_detector_specs_and_sets_are_refused(tmp_path, tiny_run):
    with pytest.raises(ValueError, match="no such file"):
        load_detector(str(tmp_path / "missing.pt"))
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX"):
        load_detector(str(bogus))
    text = tmp_path / "model.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match="expected a .pt"):
        load_detector(str(text))
    with pytest.raises(ValueError, match="unknown openWakeWord model|not installed"):
        load_detector("oww:computer")
    det = load_detector(str(tiny_run / "best.pt"))
    with pytest.raises(ValueError, match="must differ"):
        run_bench([det, det], [EvalSet("x", (), ("a",))], BenchConfig(), tmp_path, progress=False)
    with pytest.raises(ValueError):
        BenchConfig(stream_s=0)


def test_openwakeword_runs_through_its_own_streaming_api_with_state_reset(speech_audio):
    pytest.importorskip("openwakeword")
    det = load_detector("oww:hey_jarvis")
    assert det.kind == "openwakeword" and det.phrase == "hey jarvis" and det.hop_s == 0.08
    audio = np.concatenate([np.zeros(SR, np.float32), speech_audio])
    det.reset()
    first = det.process(audio)
    assert len(first) == len(audio) // 1280 and np.all((first >= 0) & (first <= 1))
    det.process(np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.3)  # change its state
    det.reset()
    assert np.array_equal(det.process(audio), first)  # reset restores the freshly loaded state exactly
    timer = load_detector("oww:timer")  # a multi-class model: the score is its best class
    assert len(timer.labels) == 6 and len(timer.process(audio)) == len(first)


def test_cli_bench_on_user_folders_with_noise(tmp_path, tiny_run, speech_audio, capsys):
    from wakeword.cli import main

    _write(tmp_path / "pos" / "a.wav", speech_audio)
    _write(tmp_path / "neg" / "b.wav", speech_audio[::-1].copy())
    _write(tmp_path / "noise" / "n.wav", np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1)
    rc = main(["-q", "bench", "--positives", str(tmp_path / "pos"), "--negatives", str(tmp_path / "neg"),
               "--noise", str(tmp_path / "noise"), "--phrase", "computer", "--snr", "10",
               "--detector", f"mine={tiny_run / 'best.pt'}", "--out", str(tmp_path / "out")])
    assert rc == 0
    rep = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert rep["config"]["snr_db"] == 10 and rep["sets"]["folders"]["detectors"]["mine"]["n_positive"] == 1
    assert "noise at 10 dB SNR" in capsys.readouterr().out
    assert main(["-q", "bench", "--preset", "nope", "--detector", str(tiny_run / "best.pt"), "--out",
                 str(tmp_path / "x")]) == 2
    assert main(["-q", "bench", "--positives", str(tmp_path / "missing"), "--detector", str(tiny_run / "best.pt"),
                 "--out", str(tmp_path / "x")]) == 2


def test_ensemble_scores_the_mean_of_its_members(tiny_run, tiny_data, tmp_path, speech_audio):
    from wakeword.export import export_model
    from wakeword.training.fit import TrainConfig, fit

    other = tmp_path / "other"
    fit(TrainConfig(epochs=1, steps_per_epoch=3, batch_size=16, seed=1, model={"width": 0.5}), tiny_data, other,
        progress=False)
    a, b = tiny_run / "best.pt", other / "best.pt"
    ens = load_detector(f"pair={a}+{b}")
    assert ens.kind == "ensemble" and ens.name == "pair" and ens.phrase == "computer"
    sa, sb = load_detector(str(a)).process(speech_audio), load_detector(str(b)).process(speech_audio)
    assert not np.allclose(sa, sb)
    np.testing.assert_allclose(ens.process(speech_audio), (sa + sb) / 2, atol=1e-6)
    split = EvalSet.from_split(tiny_data, "test")
    rep = run_bench([ens], [EvalSet("t", split.positives, split.negatives)], BenchConfig(), tmp_path / "o",
                    progress=False)
    assert 0 <= rep["sets"]["t"]["detectors"]["pair"]["pauc"] <= 1
    export_model(a, tmp_path / "m.onnx", streaming=True, progress=False)
    with pytest.raises(ValueError, match="ensemble members"):  # the streaming graph keeps its own state
        load_detector(f"{a}+{tmp_path / 'm.stream.onnx'}")
    with pytest.raises(ValueError, match="no such file"):
        load_detector(f"{a}+{tmp_path / 'missing.pt'}")


def _espeak(text: str, voice: int = 0) -> np.ndarray:
    from wakeword.audio.tts import EspeakBackend, Prosody

    b = EspeakBackend()
    return b.synthesize(text, b.voices()[voice], Prosody())


def test_microwakeword_runs_through_its_own_streaming_api_with_state_reset():
    """A bundled microWakeWord model through pymicro-wakeword's own front end and interpreter: it fires on
    its phrase (espeak-ng 'okay nabu', measured 0.97-0.996 over 6 voices) and not on another sentence
    (0.005), one score per model run (every 30 ms), and a reset gives the same scores again."""
    pytest.importorskip("pymicro_wakeword")
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    det = load_detector("mww:okay_nabu")
    assert det.kind == "microwakeword" and det.phrase == "okay nabu" and det.name == "microWakeWord okay_nabu"
    assert det.hop_s == pytest.approx(0.03) and det.first_end_s == pytest.approx(0.05)
    assert det.default_threshold == 0.85  # the model's own probability_cutoff
    pad = np.zeros(SR, np.float32)
    audio = np.concatenate([pad, _espeak("okay nabu"), pad])
    det.reset()
    got = det.process(audio[:12345])
    got = np.concatenate([got, det.process(audio[12345:])])  # chunks of any size: the state carries over
    assert len(got) == ((len(audio) - 480) // 160 + 1) // 3
    assert got.max() > det.default_threshold
    det.process(0.3 * np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32))
    det.reset()
    assert np.array_equal(det.process(audio), got)
    # the reference: pymicro-wakeword's API driven directly, keeping the probabilities of the runs
    ref_model, feats = MicroWakeWord.from_builtin(Model.OKAY_NABU), MicroWakeWordFeatures()
    pcm = (audio * 32767).astype(np.int16).tobytes()
    probs = [ref_model.process_streaming_prob(f) for f in feats.process_streaming(pcm)]
    assert np.allclose(got, probs[ref_model.stride - 1::ref_model.stride], atol=1e-6)
    det.reset()
    assert det.process(np.concatenate([pad, _espeak("the weather is nice in the kitchen today")])).max() < 0.5
    with pytest.raises(ValueError, match="unknown microWakeWord model"):
        load_detector("mww:computer")


def test_cli_bench_with_a_microwakeword_peer(tmp_path, capsys):
    pytest.importorskip("pymicro_wakeword")
    from wakeword.cli import main

    for i in range(3):
        _write(tmp_path / "pos" / f"{i}.wav", _espeak("okay nabu", i))
    _write(tmp_path / "neg" / "n.wav", _espeak("the weather is nice in the kitchen today, and the dishes are done"))
    rc = main(["-q", "bench", "--positives", str(tmp_path / "pos"), "--negatives", str(tmp_path / "neg"),
               "--phrase", "okay nabu", "--detector", "mww:okay_nabu", "--out", str(tmp_path / "out")])
    assert rc == 0
    r = json.loads((tmp_path / "out" / "bench.json").read_text())["sets"]["folders"]["detectors"]["microWakeWord okay_nabu"]
    assert r["n_positive"] == 3 and r["frr_at_default"] == 0.0 and r["cpu_s_per_audio_hour"] > 0
    assert "microWakeWord okay_nabu" in capsys.readouterr().out


def test_microwakeword_manifest_runs_our_streaming_int8_tflite_through_the_bench_path(speech_audio):
    """mww:NAME.json: an ESPHome-style manifest and a streaming int8 .tflite with its ring buffer in resource
    variables (a toy built by TensorFlow's converter: benchmarks/tflite_toolchain.py --fixture), run through
    pymicro-wakeword's loader and front end; its scores follow the float toy fed the same front-end frames."""
    pytest.importorskip("pymicro_wakeword")
    from benchmarks.tflite_toolchain import toy_reference, toy_weights
    from pymicro_wakeword import MicroWakeWordFeatures

    from conftest import REPO

    det = load_detector(f"mww:{REPO / 'tests' / 'data' / 'mww_toy' / 'toy.json'}")
    assert det.name == "microWakeWord toy" and det.phrase == "toy" and det.default_threshold == 0.5
    audio = np.concatenate([np.zeros(SR // 2, np.float32), speech_audio])
    det.reset()
    got = det.process(audio)
    pcm = (audio * 32767).astype(np.int16).tobytes()
    frames = np.concatenate([f.reshape(1, -1) for f in MicroWakeWordFeatures().process_streaming(pcm)])
    ref = toy_reference(frames.astype(np.float32), *toy_weights(0))
    stateless = toy_reference(frames.astype(np.float32), *toy_weights(0), stateful=False)
    assert len(got) == len(ref) > 50
    # measured medians: 6e-4 (espeak) / 8.7e-4 (LJSpeech) against the float toy, 0.065 / 0.094 against a stateless one
    assert np.median(np.abs(got - ref)) < 0.005 and np.median(np.abs(got - stateless)) > 0.02
