"""`wakeword experiment ablation`: levers vs the default recipe over seeds, measured with the bench protocol."""
from __future__ import annotations

import json

import pytest
import yaml

from wakeword.experiments import AblationExperiment, ablation_experiment, ablation_markdown, deep_merge


def test_deep_merge_overrides_nested_keys_only():
    base = {"epochs": 8, "augment": {"speed_prob": 0.5, "rir_prob": 0.35}}
    assert deep_merge(base, {"augment": {"rir_prob": 0.0}, "epochs": 16}) == {
        "epochs": 16, "augment": {"speed_prob": 0.5, "rir_prob": 0.0}}
    assert base["augment"]["rir_prob"] == 0.35  # not mutated


def _config(tmp_path, tiny_data, variants):
    from wakeword.evaluation.evaluate import EvalSet

    split = EvalSet.from_split(tiny_data, "test")
    set_yaml = tmp_path / "set.yaml"
    set_yaml.write_text(yaml.safe_dump({"name": "tiny", "root": "/", "phrase": "computer",
                                        "positives": [p.lstrip("/") for p in split.positives],
                                        "negatives": [p.lstrip("/") for p in split.negatives],
                                        "noise": [p.lstrip("/") for p in split.negatives if "noise" in p] or
                                                 [split.negatives[0].lstrip("/")]}))
    cfg = tmp_path / "ablation.yaml"
    cfg.write_text(yaml.safe_dump({"experiment": {
        "data_dir": str(tiny_data), "seeds": [0],
        "train": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 16, "model": {"width": 0.5}},
        "variants": variants, "sets": [str(set_yaml)], "snr_db": [None, 10]}}))
    return cfg


def test_ablation_trains_benches_and_resumes(tmp_path, tiny_data):
    cfg = _config(tmp_path, tiny_data, {"default": {}, "no_reverb": {"augment": {"rir_prob": 0.0}}})
    exp = AblationExperiment.from_yaml(cfg)
    res = ablation_experiment(exp, tmp_path / "out")
    assert set(res["variants"]) == {"default", "no_reverb"}
    for v in res["variants"].values():
        assert v["seeds"] == [0]
        assert set(v["metrics"]) == {"tiny (clean)", "tiny (snr10)"}
        for m in v["metrics"].values():
            assert 0 <= m["frr"]["mean"] <= 1 and 0 <= m["aut"]["mean"] <= 1
    run = tmp_path / "out" / "no_reverb_seed0"
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["augment"]["rir_prob"] == 0.0 and saved["model"] == {"width": 0.5}  # override on the base
    stamp = (run / "best.pt").stat().st_mtime_ns
    bench_stamp = (run / "bench" / "snr10" / "bench.json").stat().st_mtime_ns
    again = ablation_experiment(exp, tmp_path / "out")  # resumes: nothing is retrained or re-benched
    assert (run / "best.pt").stat().st_mtime_ns == stamp
    assert (run / "bench" / "snr10" / "bench.json").stat().st_mtime_ns == bench_stamp
    assert again["variants"] == res["variants"]
    md = ablation_markdown(again, "wakeword experiment ablation")
    assert "| no_reverb |" in md and ("(+" in md or "(-" in md)
    assert "no real recording went into training" in md
    # A run saved before a TrainConfig field existed is still reused when the field holds its default.
    conf = json.loads((run / "config.json").read_text())
    del conf["train"]["background_kinds"], conf["train"]["exclude_kinds"]
    (run / "config.json").write_text(json.dumps(conf))
    ablation_experiment(exp, tmp_path / "out")
    assert (run / "best.pt").stat().st_mtime_ns == stamp
    part = ablation_experiment(exp, tmp_path / "out", summarise_only=True)
    assert part["variants"]["default"]["seeds"] == [0]
    # --variants: only the named ones (and the default) are run or tabulated; an unknown name is refused.
    from wakeword.cli import main

    md_path = tmp_path / "out" / "results.md"  # the experiment's own results file, in its --out folder
    assert main(["-q", "experiment", "ablation", "--config", str(cfg), "--out", str(tmp_path / "out"),
                 "--summarise-only", "--variants", "no_reverb"]) == 0
    assert "| no_reverb |" in md_path.read_text() and "| default |" in md_path.read_text()
    assert main(["-q", "experiment", "ablation", "--config", str(cfg), "--out", str(tmp_path / "out"),
                 "--summarise-only", "--variants", "nope"]) == 2
    # The same variant name with other overrides must not silently reuse the finished run.
    changed = AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"default": {},
                                                                        "no_reverb": {"augment": {"rir_prob": 0.1}}}))
    with pytest.raises(ValueError, match="another config"):
        ablation_experiment(changed, tmp_path / "out")


def test_ablation_refuses_bad_variants(tmp_path, tiny_data):
    cfg = _config(tmp_path, tiny_data, {"default": {}})
    d = yaml.safe_load(cfg.read_text())
    d["experiment"]["fa_per_hour"] = 0.3
    cfg.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match="fa_per_hour"):
        AblationExperiment.from_yaml(cfg)
    with pytest.raises(ValueError, match="default"):
        AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"x": {}}))
    with pytest.raises(ValueError, match="variant 'bad'"):
        AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"default": {}, "bad": {"augment": {"nope": 1}}}))
    with pytest.raises(ValueError, match="variant 'norm'.*window_norm"):  # a bad model option fails before training
        AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"default": {}, "norm": {"model": {"window_norm": "x"}}}))


def test_a_variant_distilled_from_another_variant_at_the_same_seed(tmp_path, tiny_data):
    """`distill: {teacher_variant: default}`: the default trains first, then teaches the variant (issue #19's
    distilled student measured like every other lever)."""
    variants = {"default": {}, "distilled": {"distill": {"teacher_variant": "default", "kd_weight": 1.0,
                                                         "feature_weight": 0.5, "student_stages": [1, 3]}}}
    exp = AblationExperiment.from_yaml(_config(tmp_path, tiny_data, variants))
    res = ablation_experiment(exp, tmp_path / "out")
    assert res["variants"]["distilled"]["seeds"] == [0]
    saved = json.loads((tmp_path / "out" / "distilled_seed0" / "config.json").read_text())
    assert saved["distill"]["teachers"][0]["checkpoint"] == str(tmp_path / "out" / "default_seed0" / "best.pt")
    report = json.loads((tmp_path / "out" / "distilled_seed0" / "distill_report.json").read_text())
    assert report["teachers"][0]["checkpoint"].endswith("default_seed0/best.pt")
    # Another distillation config under the same name is not silently reused.
    other = {**variants, "distilled": {"distill": {"teacher_variant": "default", "kd_weight": 2.0,
                                                   "student_stages": [1, 3]}}}
    with pytest.raises(ValueError, match="another config"):
        ablation_experiment(AblationExperiment.from_yaml(_config(tmp_path, tiny_data, other)), tmp_path / "out")
    for bad, msg in (({"kd_weight": 1.0}, "teacher_variant"), ({"teacher_variant": "nope"}, "not another variant"),
                     ({"teacher_variant": "default", "nope": 1}, "unknown distill config keys")):
        with pytest.raises(ValueError, match=msg):
            AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"default": {}, "d": {"distill": bad}}))


def test_a_variant_may_train_on_another_data_folder(tmp_path, tiny_data):
    """A data lever: the variant's ``data_dir`` is the folder it trains on (another build of the data), the
    others train on the experiment's; a folder that is not a data set fails before any training."""
    import shutil

    other = tmp_path / "other_data"
    shutil.copytree(tiny_data, other)
    exp = AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"default": {},
                                                                     "more_data": {"data_dir": str(other)}}))
    res = ablation_experiment(exp, tmp_path / "out")
    used = {v: json.loads((tmp_path / "out" / f"{v}_seed0" / "config.json").read_text())["data_dir"]
            for v in ("default", "more_data")}
    assert used == {"default": str(tiny_data.resolve()), "more_data": str(other.resolve())}
    assert res["variants"]["more_data"]["overrides"] == {"data_dir": str(other)}
    assert "data_dir" not in json.loads((tmp_path / "out" / "more_data_seed0" / "config.json").read_text())["train"]
    missing = AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"default": {},
                                                                         "gone": {"data_dir": str(tmp_path / "no")}}))
    with pytest.raises(FileNotFoundError, match="no data set"):
        ablation_experiment(missing, tmp_path / "out2")
    assert not (tmp_path / "out2" / "default_seed0").exists()
    with pytest.raises(ValueError, match="variant 'bad'.*data_dir"):
        AblationExperiment.from_yaml(_config(tmp_path, tiny_data, {"default": {}, "bad": {"data_dir": 3}}))
