import json
import sys

import pytest
import torch

from conftest import start_train_and_kill
from wakeword.training.checkpoint import load_checkpoint
from wakeword.training.fit import TrainConfig, fit


def test_fit_writes_metrics_and_checkpoints(tiny_run):
    lines = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert 0.0 <= r["val_pauc"] <= 1.0 and r["train_loss"] > 0
    best = load_checkpoint(tiny_run / "best.pt")
    assert best["metrics"]["val_pauc"] == max(r["val_pauc"] for r in lines)
    assert best["config"]["train"]["model"] == {"width": 0.5}
    assert (tiny_run / "tb").is_dir() and json.loads((tiny_run / "config.json").read_text())["train"]["epochs"] == 2


def test_best_checkpoint_carries_the_threshold_no_validation_negative_reaches(tiny_run, tiny_data):
    import numpy as np

    from wakeword.dataset.manifest import read_manifest, select
    from wakeword.dataset.torch_data import load_clips
    from wakeword.inference import Detector
    from wakeword.training.checkpoint import model_from_checkpoint
    from wakeword.training.fit import score_clips

    best = load_checkpoint(tiny_run / "best.pt")
    t = best["threshold"]
    assert t == best["metrics"]["val_threshold"] and Detector.load(tiny_run / "best.pt").default_threshold == t
    rows = select(read_manifest(tiny_data), "val")
    scores = np.float32(score_clips(model_from_checkpoint(best), load_clips(rows, tiny_data)))
    labels = np.array([r.label for r in rows])
    assert scores[labels == 0].max() < t <= np.nextafter(scores[labels == 0].max(), np.float32(2))
    assert best["metrics"]["val_frr_at_threshold"] == np.mean(scores[labels == 1] < t)


def test_calibrated_threshold_edge_cases():
    import numpy as np

    from wakeword.training.fit import calibrated_threshold

    assert calibrated_threshold(np.array([1, 1]), np.array([0.2, 0.9])) == {}  # no negatives: keep the default
    out = calibrated_threshold(np.array([0, 1, 1]), np.array([1.0, 0.9, 1.0]))
    assert out["val_threshold"] == 1.0 and out["val_frr_at_threshold"] == 0.5  # capped at 1


def test_resume_after_kill_matches_uninterrupted_run(tiny_data, tmp_path):
    cfg = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=8, model={"width": 0.5}, seed=3)
    ref = tmp_path / "ref"
    fit(cfg, tiny_data, ref, progress=False)

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "wakeword.cli", "-q", "train", "--data", str(tiny_data), "--out", str(run),
           "--epochs", "3", "--steps-per-epoch", "3", "--batch-size", "8", "--seed", "3"]
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("train:\n  model: {width: 0.5}\n")
    cmd += ["--config", str(cfg_file)]
    if start_train_and_kill(cmd, run) >= 3:
        pytest.skip("the run finished before it could be killed")
    summary = fit(cfg, tiny_data, run, progress=False)  # resumes
    assert summary["epochs"] == 3
    logged = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]  # no epoch lost or logged twice
    a = torch.load(ref / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_resume_refuses_a_different_config(tiny_run, tiny_data):
    with pytest.raises(ValueError, match="different config"):
        fit(TrainConfig(epochs=5, steps_per_epoch=4, batch_size=16), tiny_data, tiny_run, progress=False)


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="unknown train config"):
        TrainConfig.from_dict({"epoch": 3})
