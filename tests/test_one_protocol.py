"""One scoring protocol and one threshold on every surface (issue #18): the same model scored through
`wakeword eval`, `wakeword bench`, the UI's Benchmark job and the Python API gives the same numbers, at the
model's own calibrated threshold."""
from __future__ import annotations

import json

import pytest

from wakeword.cli import main


def test_eval_bench_ui_job_and_api_agree(tiny_run, tiny_data, tmp_path):
    from wakeword.evaluation.evaluate import EvalSet, evaluate
    from wakeword.inference import Detector
    from wakeword.mining.store import MiningStore
    from wakeword.training.checkpoint import load_checkpoint
    from wakeword.ui.worker import _benchmark

    ckpt = tiny_run / "best.pt"
    own = load_checkpoint(ckpt)["threshold"]
    assert own is not None  # the tiny run calibrates one on its validation split

    # the Python API
    api = evaluate(Detector.load(ckpt), [EvalSet.from_split(tiny_data, "test")], tmp_path / "api",
                   progress=False)["sets"]["test split"]
    # wakeword eval
    assert main(["-q", "eval", "--model", str(ckpt), "--data", str(tiny_data), "--out", str(tmp_path / "eval")]) == 0
    cli_eval = json.loads((tmp_path / "eval" / "report.json").read_text())["sets"]["test split"]
    # wakeword bench
    assert main(["-q", "bench", "--detector", f"m={ckpt}", "--data", str(tiny_data),
                 "--out", str(tmp_path / "bench")]) == 0
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())["sets"]["test split"]["detectors"]["m"]
    # the UI's Benchmark job (the function its worker process runs)
    ui = _benchmark(MiningStore(tmp_path / "ws"), str(ckpt), "test", tmp_path / "ui")["metrics"]

    assert api["threshold"] == pytest.approx(own)  # the model's own threshold, not a fallback
    for r in (cli_eval, ui):
        assert r["threshold"] == api["threshold"]
        for k in ("n_positive", "n_negative_clips", "negative_hours", "pauc", "eer", "fa_per_hour_at_threshold",
                  "frr_at_threshold", "frr_at_fa_per_hour", "aut_frr_fa_0_1"):
            assert r[k] == api[k], k
    assert bench["default_threshold"] == api["threshold"]
    assert bench["fa_per_hour_at_default"] == api["fa_per_hour_at_threshold"]
    assert bench["frr_at_default"] == api["frr_at_threshold"]
    for k in ("n_positive", "n_negative_clips", "negative_hours", "pauc", "eer", "frr_at_fa_per_hour",
              "aut_frr_fa_0_1"):
        assert bench[k] == api[k], k


def test_a_given_threshold_overrides_the_models_own(tiny_run, tiny_data, tmp_path):
    from wakeword.evaluation.evaluate import EvalSet, evaluate
    from wakeword.inference import Detector

    det = Detector.load(tiny_run / "best.pt")
    s = [EvalSet.from_split(tiny_data, "test")]
    own = evaluate(det, s, tmp_path / "a", progress=False)["sets"]["test split"]
    given = evaluate(det, s, tmp_path / "b", threshold=0.999, progress=False)["sets"]["test split"]
    assert own["threshold"] == pytest.approx(det.default_threshold) and given["threshold"] == 0.999
    assert given["pauc"] == own["pauc"]  # threshold-free figures do not move
    assert given["frr_at_threshold"] >= own["frr_at_threshold"] or det.default_threshold > 0.999


def test_streaming_and_track_detectors_share_the_protocol(tiny_run, tiny_data):
    """A checkpoint scored through its track scorer and through the StreamDetector adapter: identical scores."""
    from wakeword.evaluation.evaluate import EvalSet, load_set_audio
    from wakeword.evaluation.scoring import TrackDetector, as_detector, score_set
    from wakeword.inference import Detector

    det = Detector.load(tiny_run / "best.pt")
    assert isinstance(as_detector(det), TrackDetector)
    pos, neg, skipped = load_set_audio(EvalSet.from_split(tiny_data, "test"), progress=False)
    a = score_set(det, pos, neg, skipped, progress=False)
    b = score_set(TrackDetector(det, "wrapped"), pos, neg, skipped, progress=False)
    assert (a.pos_scores == b.pos_scores).all() and (a.neg_clip_scores == b.neg_clip_scores).all()
    assert len(a.neg_streams) == len(b.neg_streams) and len(a.clip_places) == len(neg)
