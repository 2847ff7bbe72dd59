"""`wakeword hpo run|show|compare|export`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from wakeword.cli.common import load_yaml, overrides


def _hpo_config(a: argparse.Namespace):
    from wakeword.hpo.study import HpoConfig

    d = overrides(load_yaml(a.config, "hpo"), a, ("data_dir", "study_dir", "study_name", "storage", "latency", "seed"))
    if getattr(a, "no_pbt", False):
        d["pbt"] = {**d.get("pbt", {}), "enabled": False}
    if "data_dir" not in d:
        raise SystemExit("error: give --data or data_dir in the config's hpo: section")
    return HpoConfig.from_dict(d)


def cmd_hpo_run(a: argparse.Namespace) -> int:
    from wakeword.hpo.study import run_study

    summary = run_study(_hpo_config(a), a.trials, resume=a.resume, progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_hpo_show(a: argparse.Namespace) -> int:
    from wakeword.hpo.study import load_study, show

    study = load_study(a.study_dir, a.study_name, a.storage or "")
    out = a.out or str(Path(a.study_dir) / "report")
    summary = show(study, out)
    print(summary["table"])
    print(f"{summary['trials']} finished trials ({summary['failed']} failed); hypervolume {summary['hypervolume']:.4g}")
    print(f"plots: {out}/pareto.png, pareto.html, hypervolume.png, lineage.png")
    return 0


def cmd_hpo_compare(a: argparse.Namespace) -> int:
    from wakeword.hpo.study import compare, load_study

    studies = {}
    for spec in a.study:
        label, _, rest = spec.partition("=")
        folder, _, name = rest.partition(":")
        if not folder:
            raise ValueError(f"--study {spec}: expected LABEL=FOLDER[:STUDY_NAME]")
        studies[label] = load_study(folder, name or "wakeword")
    res = compare(studies, a.out, a.budget)
    print(res["table"])
    print(f"budget {res['budget']} finished trials each; plot: {Path(a.out) / 'hypervolume_compare.png'}")
    return 0


def cmd_hpo_export(a: argparse.Namespace) -> int:
    from wakeword.export.model import export_model
    from wakeword.hpo.study import load_study, trial_checkpoint

    ckpt = trial_checkpoint(load_study(a.study_dir, a.study_name, a.storage or ""), a.trial)
    report = export_model(ckpt, a.out, int8=a.int8, streaming=a.streaming, progress=not a.quiet)
    print(json.dumps(report, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    hp = sub.add_parser("hpo", help="multi-objective hyperparameter search (pAUC vs latency)").add_subparsers(
        dest="hpo_cmd", required=True)
    hr = hp.add_parser("run", help="create or continue a study; trials run one at a time")
    hr.add_argument("--config", help="YAML with an 'hpo:' section (data_dir, train, space, pbt, ...)")
    hr.add_argument("--data", dest="data_dir", help="data folder (overrides the config)")
    hr.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    hr.add_argument("--resume", action="store_true", help="continue an existing study (after a kill too)")
    hr.add_argument("--study-dir", help="folder of trials and the default SQLite storage (default work/hpo)")
    hr.add_argument("--study-name")
    hr.add_argument("--storage", help="any Optuna RDB URL (default: sqlite in the study folder)")
    hr.add_argument("--latency", choices=["measured", "macs"], help="second objective")
    hr.add_argument("--seed", type=int)
    hr.add_argument("--no-pbt", action="store_true", help="plain NSGA-II (no PBT children)")
    hr.set_defaults(func=cmd_hpo_run)
    study = argparse.ArgumentParser(add_help=False)
    study.add_argument("--study-dir", default="work/hpo")
    study.add_argument("--study-name", default="wakeword")
    study.add_argument("--storage")
    hs = hp.add_parser("show", parents=[study], help="Pareto table and plots")
    hs.add_argument("--out", help="folder for the plots (default: STUDY_DIR/report)")
    hs.set_defaults(func=cmd_hpo_show)
    he = hp.add_parser("export", parents=[study], help="export one trial's model like any other")
    he.add_argument("--trial", type=int, required=True)
    he.add_argument("--out", required=True, help="output .onnx path")
    he.add_argument("--int8", action="store_true")
    he.add_argument("--streaming", action="store_true")
    he.set_defaults(func=cmd_hpo_export)
    hc = hp.add_parser("compare", help="hypervolume of studies at the same trial budget (e.g. with vs without PBT)")
    hc.add_argument("--study", action="append", required=True, help="LABEL=STUDY_DIR[:STUDY_NAME], repeatable")
    hc.add_argument("--budget", type=int, help="first N finished trials of each (default: the smallest count)")
    hc.add_argument("--out", required=True, help="folder for compare.md/json and hypervolume_compare.png")
    hc.set_defaults(func=cmd_hpo_compare)
