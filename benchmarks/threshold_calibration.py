"""Which calibration target gives the best default threshold on real audio?

A checkpoint trained with ``select: frr`` records, for each calibration target T in training/fit.py's
CALIBRATION_TARGETS, the threshold that keeps its validation stream (synthetic voices, unseen) within T false accepts
per hour. This reads an ablation folder (``wakeword experiment ablation --out DIR``), takes each run's saved bench
scores (same protocol, nothing re-scored) and reports FA/h and FRR on the bench sets at each of those thresholds.

    python benchmarks/threshold_calibration.py work/ablation_recipe_computer --variant recipe
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wakeword.evaluation import metrics


def run_points(run: Path) -> dict:
    best = json.loads((run / "train_summary.json").read_text())["best"]
    targets = {k[len("val_threshold_fa"):]: v for k, v in best.items() if k.startswith("val_threshold_fa")}
    out = {}
    for cond_dir in sorted((run / "bench").iterdir()):
        for npz in sorted((cond_dir / "scores").glob("*.npz")):
            z = np.load(npz)
            lengths = z["stream_lengths"]
            streams = np.split(z["streams"], np.cumsum(lengths)[:-1]) if len(lengths) else []
            hop = float(z["hop_s"])
            for t, thr in targets.items():
                fa = metrics.false_accepts_per_hour(list(streams), thr, hop, 1.0)
                frr = float(np.mean(z["pos_scores"] < thr))
                out.setdefault(cond_dir.name, {})[t] = {"threshold": thr, "fa_per_hour": fa, "frr": frr}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ablation", type=Path)
    ap.add_argument("--variant", default="recipe")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    runs = sorted(a.ablation.glob(f"{a.variant}_seed*"))
    table: dict = {}
    for run in runs:
        if not (run / "train_summary.json").exists():
            continue
        for cond, pts in run_points(run).items():
            for t, r in pts.items():
                table.setdefault(cond, {}).setdefault(t, []).append(r)
    lines = ["| condition | calibrated to (FA/h on the validation stream) | runs | FA/h on the bench set | FRR |",
             "|---|---|---|---|---|"]
    for cond, by_t in table.items():
        for t in sorted(by_t, key=float):
            rs = by_t[t]
            fa = [r["fa_per_hour"] for r in rs]
            frr = [r["frr"] for r in rs]
            lines.append(f"| {cond} | {t} | {len(rs)} | {np.mean(fa):.2f} ± {np.std(fa):.2f} | "
                         f"{np.mean(frr):.3f} ± {np.std(frr):.3f} |")
    print("\n".join(lines))
    if a.out:
        a.out.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
