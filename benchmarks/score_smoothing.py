"""Would averaging a detector's last k window scores (ESPHome's ``sliding_window_size``) help on real audio?

A wake word keeps a detector's score high over several consecutive windows; many false accepts are one-window
spikes. Averaging the last k scores before the threshold trades the two. This reads the runs of an ablation folder
(``wakeword experiment ablation --out DIR``) and, for each benched condition (clean, ``snr10``), re-scores only the
positives of the bench set frame by frame (the negative streams' window scores are saved by the bench and reused;
the re-scored positives' maxima are checked against the saved ones), averages over k windows and reports FRR at
0.1 / 0.5 / 1 FA/h for each k. The averaging is causal (the first k - 1 scores average in zeros), as on a device.

    python benchmarks/score_smoothing.py configs/eval/real_dev_computer.yaml work/ablation_v3_computer \\
        --variants default kokoro_draws4_long --k 1 2 3 4 5 6 8 --out docs/score_smoothing_computer.json

``--split DATA`` scores the synthetic test split of a data folder instead (positives and negatives re-scored, nothing
saved is read; the set YAML is then ignored) and reports FRR at 1 / 2 / 5 FA/h: the split holds ~0.5 h of negatives.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wakeword.evaluation import metrics
from wakeword.evaluation.bench import add_noise, clip_seed
from wakeword.evaluation.detectors import load_detector
from wakeword.evaluation.evaluate import EvalSet, load_set_audio
from wakeword.evaluation.scoring import ScoringConfig, pad_positive, score_set

POINTS = (0.1, 0.5, 1.0)


def smooth(scores: np.ndarray, k: int) -> np.ndarray:
    """Causal mean of the last k scores (zeros before the first)."""
    if k <= 1 or len(scores) == 0:
        return scores
    padded = np.concatenate([np.zeros(k - 1, scores.dtype), scores])
    return np.lib.stride_tricks.sliding_window_view(padded, k).mean(axis=1)


def frame_scores(det, clips: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for a in clips:
        det.reset()
        out.append(np.asarray(det.process(a), np.float32))
    return out


def frr_by_k(frames: list[np.ndarray], streams: list[np.ndarray], hop: float, ks, points=POINTS) -> dict:
    res = {}
    for k in ks:
        pos = np.array([smooth(f, k).max() if len(f) else 0.0 for f in frames])
        neg = [smooth(s, k) for s in streams]
        res[k] = [metrics.frr_at_fa_per_hour(pos, neg, hop, x).frr for x in points]
    return res


def real_set(set_yaml: Path, runs: list[Path], ks) -> dict:
    es = EvalSet.from_yaml(set_yaml)
    pos, _, _ = load_set_audio(EvalSet(es.name, positives=es.positives), progress=False)
    noise = [a for _, a in load_set_audio(EvalSet("noise", negatives=es.noise), progress=False)[1]]
    cfg = ScoringConfig()
    clean = [pad_positive(a, cfg) for _, a in pos]
    conditions = {"clean": clean, "snr10": [add_noise(a, noise, 10.0, clip_seed(f)) for (f, _), a in zip(pos, clean)]}
    out: dict = {}
    for run in runs:
        det = load_detector(str(run / "best.pt"))
        for cond, clips in conditions.items():
            saved = sorted((run / "bench" / cond / "scores").glob("*.npz"))
            if not saved:
                continue
            z = np.load(saved[0])
            frames = frame_scores(det, clips)
            gap = np.abs(np.sort([f.max() for f in frames]) - np.sort(z["pos_scores"])).max()
            if gap > 1e-4:
                raise SystemExit(f"{run} {cond}: re-scored positives differ from the bench's by {gap:.2g}")
            streams = np.split(z["streams"], np.cumsum(z["stream_lengths"])[:-1])
            out.setdefault(cond, {})[run.name] = frr_by_k(frames, streams, float(z["hop_s"]), ks)
            print(run.name, cond, " ".join(f"k{k}:{v[1]:.3f}" for k, v in out[cond][run.name].items()), flush=True)
    return out


def synthetic_split(data: Path, runs: list[Path], ks) -> dict:
    pos, neg, _ = load_set_audio(EvalSet.from_split(data, "test"), progress=False)
    cfg = ScoringConfig()
    out: dict = {}
    for run in runs:
        det = load_detector(str(run / "best.pt"))
        frames = frame_scores(det, [pad_positive(a, cfg) for _, a in pos])
        sc = score_set(det, [], neg, cfg=cfg, progress=False)
        out.setdefault("synthetic test", {})[run.name] = frr_by_k(frames, sc.neg_streams, sc.hop_s, ks, (1.0, 2.0, 5.0))
        print(run.name, " ".join(f"k{k}:{v[1]:.3f}" for k, v in out["synthetic test"][run.name].items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", type=Path, help="an evaluation-set YAML (its positives and noise are read)")
    ap.add_argument("ablation", type=Path)
    ap.add_argument("--variants", nargs="+", required=True)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 8])
    ap.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: every run of each variant)")
    ap.add_argument("--split", type=Path, help="score this data folder's synthetic test split instead")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    runs = [r for v in a.variants for r in sorted(a.ablation.glob(f"{v}_seed*")) if (r / "best.pt").exists()
            and (a.seeds is None or int(r.name.rsplit("_seed", 1)[1]) in a.seeds)]
    res = synthetic_split(a.split, runs, a.k) if a.split else real_set(a.set, runs, a.k)
    points = (1.0, 2.0, 5.0) if a.split else POINTS
    lines = ["| variant | condition | seeds | k (window scores averaged) | "
             + " | ".join(f"FRR@{p:g} FA/h" for p in points) + " |", "|---|---|---|---|" + "---|" * len(points)]
    for cond, by_run in res.items():
        for v in a.variants:
            rs = {r: x for r, x in by_run.items() if r.startswith(f"{v}_seed")}
            for k in a.k:
                vals = np.array([x[k] for x in rs.values()])
                if len(vals):
                    std = vals.std(0, ddof=1) if len(vals) > 1 else np.zeros(len(points))
                    lines.append(f"| {v} | {cond} | {len(vals)} | {k} | "
                                 + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(vals.mean(0), std)) + " |")
    print("\n".join(lines))
    if a.out:
        a.out.write_text(json.dumps({"command": "python benchmarks/score_smoothing.py " + " ".join(
            str(x) for x in [a.set, a.ablation, "--variants", *a.variants, "--k", *a.k]
            + (["--seeds", *a.seeds] if a.seeds else []) + (["--split", a.split] if a.split else [])),
            "results": res, "table": lines}, indent=1, default=str))


if __name__ == "__main__":
    main()
