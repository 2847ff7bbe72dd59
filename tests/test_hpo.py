"""Multi-objective HPO: search space, Pareto ranking against Optuna, PBT lineage, resumption after a
real kill -9, outputs and bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from wakeword.hpo.pbt import (
    PBTConfig,
    crowding_distance,
    explore,
    hypervolume_2d,
    non_dominated_rank,
    pick_parent,
    ranking,
)
from wakeword.hpo.space import DEFAULT_SPACE, TEMPERATURES, apply, parse_space, suggest
from wakeword.hpo.study import HpoConfig, load_study, run_study, show, trial_checkpoint

TINY_TRAIN = {"epochs": 1, "steps_per_epoch": 8, "batch_size": 16, "num_workers": 0}  # enough for val pAUC > 0
SMALL_SPACE = {"model.width": {"kind": "categorical", "choices": [0.25, 0.5]},
               "train.lr": {"kind": "float", "low": 1e-3, "high": 1e-2, "log": True},
               "specaugment.time_mask_frac": {"kind": "float", "low": 0.0, "high": 0.1}}


def _cfg(tiny_data, study_dir, **kw) -> HpoConfig:
    d = {"data_dir": str(tiny_data), "study_dir": str(study_dir), "population": 2, "latency_reps": 5,
         "train": TINY_TRAIN, "space": SMALL_SPACE, "pbt": {"warmup": 2, "interval": 2}}
    d.update(kw)
    return HpoConfig.from_dict(d)


# ------------------------------------------------------------------ the space
def test_space_suggest_and_apply():
    space = parse_space(DEFAULT_SPACE, with_teachers=True)
    names = {p.name for p in space}
    assert {"model.width", "train.lr", "augment.snr_db.0", "specaugment.freq_mask_frac", "distill.kd_weight",
            "distill.temperature"} <= names
    assert not any(p.needs_teachers for p in parse_space(DEFAULT_SPACE, with_teachers=False))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(0))
    params = suggest(study.ask(), space)
    assert set(params) == names
    train, distill = apply(params, {"epochs": 3, "augment": {"gain_db": [-3, 3]}}, {"teachers": ["a.pt"]})
    assert train["lr"] == params["train.lr"] and train["model"]["width"] == params["model.width"]
    assert train["augment"]["snr_db"] == sorted([params["augment.snr_db.0"], params["augment.snr_db.1"]])
    assert train["augment"]["gain_db"] == [-3, 3] and train["epochs"] == 3
    assert distill["temperature"] == TEMPERATURES[params["distill.temperature"]]
    from wakeword.training.distill import DistillConfig
    from wakeword.training.fit import TrainConfig

    TrainConfig.from_dict(train)  # a valid config
    DistillConfig.from_dict(distill)


@pytest.mark.parametrize("space, message", [
    ({}, "empty"),
    ({"train.learning_rate": {"kind": "float", "low": 0.1, "high": 1}}, "unknown search parameter"),
    ({"model.width": {"kind": "gaussian"}}, "kind must be"),
    ({"train.lr": {"kind": "float", "low": 1, "high": 0.1}}, "low <= high"),
    ({"train.lr": {"kind": "float", "low": 0, "high": 1, "log": True}}, "log scale"),
    ({"distill.kd_weight": {"kind": "float", "low": 0.1, "high": 1}}, "empty once distillation"),
])
def test_bad_spaces_are_refused(space, message):
    with pytest.raises(ValueError, match=message):
        parse_space(space, with_teachers=False)


# ------------------------------------------------------------------ Pareto ranking and PBT
def test_non_dominated_rank_matches_optuna_best_trials():
    rng = np.random.default_rng(0)
    vals = np.column_stack([rng.random(40), rng.random(40)])
    study = optuna.create_study(directions=["maximize", "minimize"])
    for v in vals:
        study.add_trial(optuna.trial.create_trial(values=list(v), params={}, distributions={}))
    rank = non_dominated_rank(vals, (True, False))
    assert set(np.where(rank == 0)[0]) == {t.number for t in study.best_trials}
    # every member of front r+1 is dominated by some member of front r
    for r in range(1, rank.max() + 1):
        for i in np.where(rank == r)[0]:
            assert any(vals[j, 0] >= vals[i, 0] and vals[j, 1] <= vals[i, 1] for j in np.where(rank == r - 1)[0])


def test_crowding_and_ranking_order():
    front = np.array([[0.9, 3.0], [0.5, 1.0], [0.7, 2.0], [0.8, 2.9]])
    d = crowding_distance(front)
    assert np.isinf(d[0]) and np.isinf(d[1]) and d[2] > d[3]
    vals = np.vstack([front, [[0.1, 5.0]]])  # the last point is dominated
    order = ranking(vals, (True, False))
    assert order[-1] == 4 and set(order[:2]) == {0, 1}
    rng = np.random.default_rng(1)
    assert {pick_parent(vals, (True, False), 0.4, rng) for _ in range(50)} == {0, 1}


def test_explore_keeps_architecture_and_is_seeded():
    space = parse_space(DEFAULT_SPACE, with_teachers=False)
    params = {"model.width": 1.0, "model.depth": 1.0, "model.kernel": 3, "model.se": True, "train.lr": 3e-3,
              "train.weight_decay": 0.01, "train.batch_size": 64, "augment.snr_db.0": 0.0, "augment.snr_db.1": 25.0,
              "specaugment.time_mask_frac": 0.08, "specaugment.freq_mask_frac": 0.12}
    cfg = PBTConfig(perturb_prob=0.7, resample_prob=0.3)
    a = explore(params, space, cfg, np.random.default_rng([0, 7]))
    b = explore(params, space, cfg, np.random.default_rng([0, 7]))
    assert a == b  # seeded
    child, mutations = a
    assert mutations and all(not k.startswith("model.") for k in mutations)
    for k, (old, new, how) in mutations.items():
        assert child[k] == new and params[k] == old and (how == "resample" or how in ("x0.8", "x1.2"))
        p = next(p for p in space if p.name == k)
        if p.kind != "categorical":
            assert p.low <= new <= p.high


def test_hypervolume_2d_against_optuna():
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.random(15), rng.random(15) * 4])
    ref = (0.0, 5.0)
    ours = hypervolume_2d(pts, ref, (True, False))
    loss = np.column_stack([-pts[:, 0], pts[:, 1]])  # optuna's convention: minimise everything
    theirs = compute_hypervolume(loss, np.array([-ref[0], ref[1]]))
    assert ours == pytest.approx(theirs)


# ------------------------------------------------------------------ a real study
@pytest.mark.slow  # about a minute on 2 cores: `make test` runs it, `pytest -m 'not slow'` skips it
def test_study_runs_with_pbt_children_shows_and_exports(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path / "hpo")
    summary = run_study(cfg, 5, progress=False)
    assert summary["complete"] == 5 and summary["pareto"]
    study = load_study(tmp_path / "hpo", "wakeword")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    children = [t for t in done if "pbt_parent" in t.user_attrs]
    assert children  # trials 2 and 4 fork a parent
    for c in children:
        parent = next(t for t in done if t.number == c.user_attrs["pbt_parent"])
        assert c.user_attrs["generation"] == parent.user_attrs.get("generation", 0) + 1
        assert c.user_attrs["init_from"] == parent.user_attrs["checkpoint"]
        assert c.params["model.width"] == parent.params["model.width"]  # inherits the architecture
        run_cfg = json.loads((Path(c.user_attrs["trial_dir"]) / "run" / "config.json").read_text())
        assert run_cfg["train"]["init_from"] == parent.user_attrs["checkpoint"]
    for t in done:
        rec = json.loads((Path(t.user_attrs["trial_dir"]) / "trial.json").read_text())
        assert rec["val_pauc"] == pytest.approx(t.values[0]) and rec["latency_ms"] == pytest.approx(t.values[1])
        assert Path(t.user_attrs["log"]).stat().st_size > 0 and t.user_attrs["seconds"] > 0
    out = show(study, tmp_path / "report")
    for f in ("pareto.png", "pareto.html", "hypervolume.png", "lineage.png", "pareto.md"):
        assert (tmp_path / "report" / f).stat().st_size > 0
    # plotly.js is inlined (several MB), so the page works offline
    assert (tmp_path / "report" / "pareto.html").stat().st_size > 1_000_000
    assert out["hypervolume"] > 0 and len(out["pareto"]) == len(summary["pareto"])
    from wakeword.cli import main

    assert main(["-q", "hpo", "export", "--study-dir", str(tmp_path / "hpo"), "--trial", str(done[0].number),
                 "--out", str(tmp_path / "t.onnx")]) == 0
    assert (tmp_path / "t.onnx").exists()
    with pytest.raises(ValueError, match="no trial 99"):
        trial_checkpoint(study, 99)
    # Bad input changes nothing: existing study without --resume, other objectives, unreadable storage.
    n = len(study.trials)
    with pytest.raises(ValueError, match="--resume"):
        run_study(cfg, 6, progress=False)
    with pytest.raises(ValueError, match="optimises"):
        run_study(_cfg(tiny_data, tmp_path / "hpo", latency="macs"), 6, resume=True, progress=False)
    with pytest.raises(ValueError, match="cannot open the study storage"):
        run_study(_cfg(tiny_data, tmp_path / "other", storage="postgresql://u@127.0.0.1:1/x"), 1, progress=False)
    assert not (tmp_path / "other").exists()
    assert len(load_study(tmp_path / "hpo", "wakeword").trials) == n


@pytest.mark.slow  # about a minute on 2 cores: `make test` runs it, `pytest -m 'not slow'` skips it
def test_kill_9_mid_trial_then_resume(tiny_data, tmp_path):
    """A real `wakeword hpo run` is killed with SIGKILL inside its third trial; --resume finishes the
    study: finished trials kept as they were, the interrupted one failed and its configuration retried."""
    study_dir = tmp_path / "hpo"
    conf = tmp_path / "hpo.yaml"
    train = {**TINY_TRAIN, "epochs": 6, "steps_per_epoch": 3}
    conf.write_text(yaml.safe_dump({"hpo": {"data_dir": str(tiny_data), "study_dir": str(study_dir),
                                            "population": 10, "latency": "macs", "train": train,
                                            "space": SMALL_SPACE, "pbt": {"enabled": False}}}))
    cmd = [sys.executable, "-m", "wakeword.cli", "-q", "hpo", "run", "--config", str(conf), "--trials", "3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    target = study_dir / "trials" / "trial_0002" / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while not target.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert target.exists(), "the third trial never started"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-training: at least one epoch done, not finished
    proc.wait()
    before = load_study(study_dir, "wakeword")
    finished = {t.number: (t.params, t.values) for t in before.trials if t.state.name == "COMPLETE"}
    running = [t for t in before.trials if t.state.name == "RUNNING"]
    assert len(finished) == 2 and [t.number for t in running] == [2]
    interrupted_params = running[0].params

    r = subprocess.run(cmd[:-1] + ["4", "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    after = load_study(study_dir, "wakeword")
    states = {t.number: t.state.name for t in after.trials}
    assert states[2] == "FAIL"
    complete = [t for t in after.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4  # nothing lost, the retry, and one new trial
    # The resumed process samples new configurations; it does not replay its predecessor's draws.
    fresh = next(t for t in complete if t.number not in finished and "retry_of" not in t.user_attrs)
    assert all(fresh.params != p for p, _ in finished.values()) and fresh.params != interrupted_params
    for num, (params, values) in finished.items():
        t = next(t for t in after.trials if t.number == num)
        assert t.params == params and t.values == values
    retry = next(t for t in complete if t.number not in finished)
    assert retry.user_attrs["retry_of"] == 2 and retry.params == interrupted_params


def test_default_configuration_trial_values():
    from wakeword.hpo.space import default_params

    space = parse_space(DEFAULT_SPACE, with_teachers=False)
    d = default_params(space, {}, None)
    assert d["model.width"] == 1.0 and d["model.kernel"] is None and d["train.lr"] == 3e-3
    assert d["augment.snr_db.0"] == 0.0 and d["augment.snr_db.1"] == 25.0
    # A base configuration outside the space has no default trial.
    assert default_params(space, {"lr": 0.5}, None) is None
    with_t = default_params(parse_space(DEFAULT_SPACE, with_teachers=True), {}, {"teachers": ["t.pt"]})
    assert with_t["distill.temperature"] == "constant2" and with_t["distill.kd_weight"] == 1.0


def test_compare_uses_one_reference_and_the_same_budget(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from wakeword.hpo.study import compare

    def study(values, objectives=("val_pauc", "macs_m"), children=()):
        s = optuna.create_study(directions=["maximize", "minimize"])
        s.set_user_attr("objectives", list(objectives))
        for i, v in enumerate(values):
            s.add_trial(create_trial(values=list(v), params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                     user_attrs={"pbt_parent": 0} if i in children else {}))
        return s

    a = study([(0.5, 2.0), (0.6, 4.0), (0.7, 10.0)], children=(1,))
    b = study([(0.4, 1.0), (0.5, 3.0), (0.9, 1.0)])
    res = compare({"A": a, "B": b}, tmp_path, budget=2)
    ref = 1.1 * 4.0  # worst cost among the first two trials of either study
    assert res["reference"] == [0.0, pytest.approx(ref)]
    assert res["studies"]["A"]["hypervolume"] == pytest.approx(0.5 * (ref - 2.0) + 0.1 * (ref - 4.0))
    assert res["studies"]["B"]["hypervolume"] == pytest.approx(0.4 * (ref - 1.0) + 0.1 * (ref - 3.0))
    assert res["studies"]["A"]["pbt_children"] == 1 and res["studies"]["B"]["pareto_size"] == 2
    assert (tmp_path / "hypervolume_compare.png").stat().st_size > 0 and "| A | 2 |" in res["table"]
    assert compare({"A": a, "B": b}, tmp_path)["budget"] == 3
    with pytest.raises(ValueError, match="different objectives"):
        compare({"A": a, "C": study([(0.5, 1.0)], objectives=("val_pauc", "latency_ms"))}, tmp_path)
    with pytest.raises(ValueError, match="finished trials"):
        compare({"A": a, "B": b}, tmp_path, budget=5)
