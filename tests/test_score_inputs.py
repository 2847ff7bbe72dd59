"""`wakeword score` on what users hand it (issue #17): the product's own streaming export, forged ONNX
metadata, long files, missing files; an evaluation-set YAML that is not a mapping."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from wakeword.audio.io import save_wav
from wakeword.cli import main


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
    from wakeword.export import export_model

    out = tmp_path_factory.mktemp("exp")
    export_model(tiny_run / "best.pt", out / "model.onnx", streaming=True, progress=False)
    return out


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def test_score_takes_the_streaming_export_and_agrees_with_the_window_export(exports, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    save_wav(wav, _speechy(6.0))
    res = {}
    for name in ("model.onnx", "model.stream.onnx"):
        assert main(["-q", "score", "--model", str(exports / name), str(wav), "--json"]) == 0
        res[name] = json.loads(capsys.readouterr().out)[0]
    assert "error" not in res["model.stream.onnx"]
    assert res["model.stream.onnx"]["max_score"] == pytest.approx(res["model.onnx"]["max_score"], abs=0.02)
    short = tmp_path / "short.wav"  # shorter than the streaming graph's warm-up: still one score
    save_wav(short, _speechy(0.3))
    assert main(["-q", "score", "--model", str(exports / "model.stream.onnx"), str(short), "--json"]) == 0


@pytest.mark.parametrize("stamp", [{"format": "wakeword-onnx-v1"},  # no features at all
                                   {"format": "wakeword-onnx-v1", "features": "{\"bogus\": 1}"},
                                   {"format": "wakeword-onnx-v1", "features": "[1, 2]"},
                                   {"format": "wakeword-onnx-v1-streaming", "stream": "{}"}])
def test_forged_onnx_metadata_gives_a_clear_error(exports, tmp_path, capsys, stamp):
    import onnx

    from wakeword.export import ONNX_FORMAT

    assert stamp["format"].startswith(ONNX_FORMAT)
    proto = onnx.load(str(exports / "model.onnx"))
    del proto.metadata_props[:]
    for k, v in stamp.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    forged = tmp_path / "forged.onnx"
    onnx.save(proto, str(forged))
    wav = tmp_path / "a.wav"
    save_wav(wav, _speechy(2.0))
    assert main(["-q", "score", "--model", str(forged), str(wav)]) == 2
    err = capsys.readouterr().err
    assert "broken wakeword" in err and "export the model again" in err, err


def test_onnx_scoring_memory_does_not_grow_with_the_file(exports):
    from wakeword.export import OnnxDetector

    det = OnnxDetector(exports / "model.onnx")
    audio = _speechy(300.0)  # 5 minutes: all windows at once would be 3750 x 16000 floats (+ int64 indices)
    tracemalloc.start()
    scores, _ = det.score_track(audio)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(scores) == 1 + (len(audio) - det.window_samples) // det.stride_samples
    assert peak < 40e6, peak / 1e6  # one batch of windows, not the whole track's (about 720 MB)


def test_missing_and_folder_inputs_say_so(exports, tmp_path, capsys):
    assert main(["-q", "score", "--model", str(exports / "model.onnx"), str(tmp_path / "nope.wav"),
                 str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "no such file" in out and "is a folder" in out and "System error" not in out


@pytest.mark.parametrize("text, expected", [("hello\n", "must hold a mapping of keys to values, not a string"),
                                            ("- a\n- b\n", "not a list"),
                                            ("root: [unclosed\n", "not valid YAML")])
def test_eval_set_yaml_that_is_not_a_mapping(tmp_path, text, expected):
    from wakeword.evaluation.evaluate import EvalSet

    y = tmp_path / "set.yaml"
    y.write_text(text)
    with pytest.raises(ValueError, match=expected):
        EvalSet.from_yaml(y)


def test_a_folder_is_scored_file_by_file_with_a_summary(exports, tmp_path, capsys):
    """`wakeword score FOLDER`: every audio file under it (recursively), then n files / n fired / the threshold."""
    import soundfile as sf

    from wakeword.runtime.onnx import OnnxDetector

    (tmp_path / "in" / "sub").mkdir(parents=True)
    for i, name in enumerate(("a.wav", "sub/b.flac")):
        sf.write(tmp_path / "in" / name, _speechy(2.0 + i), 16000)
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    assert main(["-q", "score", "--model", str(exports / "model.onnx"), str(tmp_path / "in")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines[:-1]] == [str(tmp_path / "in" / "a.wav"), str(tmp_path / "in" / "sub/b.flac")]
    thr = OnnxDetector(exports / "model.onnx").default_threshold
    fired = sum(1 for ln in lines[:-1] if not ln.endswith("events: -"))
    assert lines[-1] == f"# 2 files, {fired} fired, 0 unreadable; threshold {thr:.4g} (the model's own)"
    assert main(["-q", "score", "--model", str(exports / "model.onnx"), "--threshold", "0.25", str(tmp_path / "in")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("threshold 0.25 (given)")


def test_long_files_are_scored_in_pieces_with_the_same_scores(exports, tiny_run):
    """The progress bar's pieces do not change a score: stateless window detectors get overlapping pieces,
    streaming ones are fed in order."""
    from wakeword.evaluation.detectors import _scores_in_chunks, load_detector

    class Bar:
        seconds = 0.0

        def update(self, s):
            self.seconds += s

    audio = _speechy(7.3)
    for name in (str(exports / "model.onnx"), str(exports / "model.stream.onnx"), str(tiny_run / "best.pt")):
        det = load_detector(name)
        det.reset()
        whole = det.process(audio)
        bar = Bar()
        pieces = _scores_in_chunks(det, audio, 1.5, bar)
        assert len(pieces) == len(whole) and abs(pieces - whole).max() < 1e-5, name
        assert abs(bar.seconds - len(audio) / 16000) < 0.2
