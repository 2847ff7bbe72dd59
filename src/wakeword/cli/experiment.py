"""`wakeword experiment distill|mining|ablation`: measured comparisons; each writes its tables to OUT/results.md
(docs/RESULTS.md is written by people, from those files)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _command(a: argparse.Namespace) -> str:
    return getattr(a, "command", None) or "wakeword " + " ".join(sys.argv[1:])


def cmd_experiment_distill(a: argparse.Namespace) -> int:
    from wakeword.experiments import DistillExperiment, distill_experiment, markdown, write_results

    exp = DistillExperiment.from_yaml(a.config)
    if a.seeds:
        exp = dataclasses.replace(exp, seeds=tuple(a.seeds))
    results = distill_experiment(exp, a.out, workers=a.workers, summarise_only=a.summarise_only)
    body = markdown(results, _command(a))
    print(body)
    print(f"written to {write_results(a.out, '## Dual-teacher distillation', body)}")
    return 0


def cmd_experiment_mining(a: argparse.Namespace) -> int:
    from wakeword.experiments import MiningExperiment, mining_experiment, mining_markdown, write_results

    result = mining_experiment(MiningExperiment.from_yaml(a.config), a.out)
    body = mining_markdown(result, _command(a))
    print(body)
    print(f"written to {write_results(a.out, '## Hard-negative mining: one round', body)}")
    return 0


def cmd_experiment_ablation(a: argparse.Namespace) -> int:
    from wakeword.experiments import AblationExperiment, ablation_experiment, ablation_markdown, write_results

    exp = AblationExperiment.from_yaml(a.config)
    if a.seeds:
        exp = dataclasses.replace(exp, seeds=tuple(a.seeds))
    if a.variants:
        unknown = sorted(set(a.variants) - set(exp.variants))
        if unknown:
            raise ValueError(f"--variants: {unknown} not in {a.config} (it has {sorted(exp.variants)})")
        keep = {"default", *a.variants}  # the default is what every row is compared with
        exp = dataclasses.replace(exp, variants={k: v for k, v in exp.variants.items() if k in keep})
    results = ablation_experiment(exp, a.out, workers=a.workers, summarise_only=a.summarise_only)
    body = ablation_markdown(results, _command(a))
    print(body)
    print(f"written to {write_results(a.out, a.title or f'## Ablation: {Path(a.config).stem}', body)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--command", help=argparse.SUPPRESS)  # the command line shown in the results file
    seeds = argparse.ArgumentParser(add_help=False)
    seeds.add_argument("--seeds", type=int, nargs="+")
    seeds.add_argument("--workers", type=int, default=1, help="runs in parallel (one CPU thread each)")
    seeds.add_argument("--summarise-only", action="store_true",
                       help="train nothing: tabulate the finished runs (a partial table says which seeds)")

    ex = sub.add_parser("experiment", help="measured comparisons (tables in OUT/results.md)").add_subparsers(
        dest="exp_cmd", required=True)
    xd = ex.add_parser("distill", parents=[common, seeds],
                       help="baseline vs teachers vs distilled students over seeds (resumable)")
    xd.add_argument("--config", default="configs/distill_experiment.yaml")
    xd.add_argument("--out", default="work/distill_experiment")
    xd.set_defaults(func=cmd_experiment_distill)
    xm = ex.add_parser("mining", parents=[common],
                       help="one hard-negative mining round: before / control / after (resumable)")
    xm.add_argument("--config", default="configs/mining_experiment.yaml")
    xm.add_argument("--out", default="work/mining_experiment")
    xm.set_defaults(func=cmd_experiment_mining)
    xa = ex.add_parser("ablation", parents=[common, seeds],
                       help="each training lever vs the default recipe, over seeds, on real recordings")
    xa.add_argument("--config", default="configs/ablation_computer.yaml")
    xa.add_argument("--out", default="work/ablation_computer")
    xa.add_argument("--variants", nargs="+", help="run (or tabulate) only these variants and the default; "
                                                  "finished runs of the others stay where they are")
    xa.add_argument("--title", default="## Real voices: recipe ablation", help="heading of OUT/results.md")
    xa.set_defaults(func=cmd_experiment_ablation)
