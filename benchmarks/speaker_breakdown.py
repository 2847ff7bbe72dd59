"""Who does a detector miss? Real-voice false rejects per speaker, and whether input level explains them.

A development set's FRR is a mean over its positives, and a few speakers can hold most of them (the real "computer"
set: 47 of 67 clips by one speaker). This reads the runs of an ablation folder (``wakeword experiment ablation --out
DIR``), takes each run's operating threshold at ``--fa`` false accepts per hour from the bench's saved negative
streams (clean condition, as ``wakeword bench`` chose it), re-scores the set's positives (checked against the saved
scores at 0 dB), and reports the share of each speaker's clips scored below that threshold, at the clip's own level
and with every clip scaled by each ``--gains`` dB (clipped to [-1, 1]). Speakers come from the real data's
``index.csv`` (column ``speaker``; ``/hey`` marks the "hey computer" clips of the "computer" set).

    python benchmarks/speaker_breakdown.py configs/eval/real_dev_computer.yaml work/ablation_v4_computer \\
        --variants default --out docs/speaker_breakdown_computer.json
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from wakeword.evaluation import metrics
from wakeword.evaluation.detectors import load_detector
from wakeword.evaluation.evaluate import EvalSet, load_set_audio
from wakeword.evaluation.scoring import ScoringConfig, pad_positive

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def speakers(index_csv: Path) -> dict[str, str]:
    """file name -> speaker ("/hey" appended for the "hey computer" recordings)."""
    with open(index_csv, newline="") as f:
        return {Path(r["path"]).name: r["speaker"] + ("/hey" if "/heycomputer/" in r["path"] else "")
                for r in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", type=Path, help="an evaluation-set YAML of real recordings")
    ap.add_argument("ablation", type=Path)
    ap.add_argument("--variants", nargs="+", required=True)
    ap.add_argument("--fa", type=float, default=0.5, help="operating point, false accepts per hour")
    ap.add_argument("--gains", type=float, nargs="+", default=[-12, -6, 0, 6, 12])
    ap.add_argument("--index", type=Path, default=REAL / "index.csv")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if not a.index.exists():
        raise SystemExit(f"{a.index} not found: the per-speaker breakdown needs the real data's index.csv")
    who = speakers(a.index)
    es = EvalSet.from_yaml(a.set)
    pos, _, _ = load_set_audio(EvalSet(es.name, positives=es.positives), progress=False)
    spk = [who.get(Path(f).name, "unknown") for f, _ in pos]
    cfg = ScoringConfig()
    res: dict = {}
    for v in a.variants:
        for run in sorted(a.ablation.glob(f"{v}_seed*")):
            saved = sorted((run / "bench" / "clean" / "scores").glob("*.npz"))
            if not (run / "best.pt").exists() or not saved:
                continue
            z = np.load(saved[0])
            streams = np.split(z["streams"], np.cumsum(z["stream_lengths"])[:-1])
            thr = metrics.frr_at_fa_per_hour(z["pos_scores"], streams, float(z["hop_s"]), a.fa).threshold
            det = load_detector(str(run / "best.pt"))
            for g in a.gains:
                sc = []
                for _, x in pos:
                    det.reset()
                    sc.append(float(np.max(det.process(pad_positive(np.clip(x * 10 ** (g / 20), -1, 1), cfg)))))
                if g == 0:
                    gap = np.abs(np.sort(sc) - np.sort(z["pos_scores"])).max()
                    if gap > 1e-4:
                        raise SystemExit(f"{run}: re-scored positives differ from the bench's by {gap:.2g}")
                for s in sorted(set(spk)):
                    m = np.array([x == s for x in spk])
                    missed = float(np.mean(np.array(sc)[m] < thr))
                    res.setdefault(v, {}).setdefault(s, {}).setdefault(f"{g:+g}", []).append(missed)
            print(run.name, f"threshold {thr:.4f}", flush=True)
    lines = ["| variant | speaker | clips | " + " | ".join(f"missed at {g:+g} dB" for g in a.gains) + " |",
             "|---|---|---|" + "---|" * len(a.gains)]
    for v, by in res.items():
        for s, per in by.items():
            n = spk.count(s)
            lines.append(f"| {v} | {s} | {n} | " + " | ".join(
                f"{np.mean(per[f'{g:+g}']):.3f}" for g in a.gains) + " |")
    print("\n".join(lines))
    if a.out:
        a.out.write_text(json.dumps({"command": "python benchmarks/speaker_breakdown.py " + " ".join(
            str(x) for x in [a.set, a.ablation, "--variants", *a.variants, "--fa", a.fa, "--gains", *a.gains]),
            "fa_per_hour": a.fa, "results": res, "table": lines}, indent=1))


if __name__ == "__main__":
    main()
