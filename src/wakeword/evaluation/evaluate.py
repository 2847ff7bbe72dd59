"""Evaluation of a detector on clip sets and continuous negative audio: evaluation sets (``EvalSet``), decoding,
``evaluate`` (report.json and DET/ROC plots). The scoring itself is the one protocol of ``evaluation.scoring``.
"""
from __future__ import annotations

import glob
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wakeword.audio.io import AudioError, load_audio
from wakeword.dataset.manifest import read_manifest, select
from wakeword.defaults import FA_TARGETS, MAX_FPR, REFRACTORY_S, is_audio
from wakeword.evaluation import metrics
from wakeword.evaluation.scoring import (
    ScoringConfig,
    SetScores,
    StreamDetector,
    TrackScorer,
    as_detector,
    clip_maxima,
    lowest_positives,
    score_set,
    summarise,
    top_false_accepts,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSet:
    name: str  # shown in reports
    positives: tuple[str, ...] = ()  # audio files of the wake phrase
    negatives: tuple[str, ...] = ()  # audio files that are not the wake phrase (clips or long recordings)
    noise: tuple[str, ...] = ()  # background noise for `wakeword bench --snr` (mixed into every clip)
    phrase: str | None = None  # what the positives say; detectors of another phrase skip them

    @classmethod
    def from_yaml(cls, path: str | Path) -> EvalSet:
        """YAML: name, root (relative to the YAML file or absolute), positives / negatives / noise:
        lists of globs, phrase (optional)."""
        from wakeword.validation import load_yaml_mapping

        path = Path(path)
        spec = load_yaml_mapping(path, "evaluation set")
        unknown = set(spec) - {"name", "root", "positives", "negatives", "noise", "phrase", "description"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        root = Path(spec.get("root", "."))
        if not root.is_absolute():
            root = (path.parent / root).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{path}: root folder {root} does not exist")
        return cls(spec.get("name", path.stem), _expand(root, spec.get("positives", [])),
                   _expand(root, spec.get("negatives", [])), _expand(root, spec.get("noise", [])),
                   spec.get("phrase"))

    @classmethod
    def from_dirs(cls, name: str, positive_dirs=(), negative_dirs=(), noise_dirs=(), phrase: str | None = None) -> EvalSet:
        def files(dirs):
            for d in dirs:
                if not Path(d).is_dir():
                    raise FileNotFoundError(f"no such folder: {d}")
            return tuple(str(p) for d in dirs for p in sorted(Path(d).rglob("*")) if p.is_file()
                         and is_audio(p))
        return cls(name, files(positive_dirs), files(negative_dirs), files(noise_dirs), phrase)

    @classmethod
    def from_split(cls, data_dir: str | Path, split: str = "test") -> EvalSet:
        rows = select(read_manifest(data_dir), split)
        if not rows:
            raise ValueError(f"no '{split}' clips in {data_dir}")
        d = Path(data_dir)
        return cls(f"{split} split", tuple(str(d / r.path) for r in rows if r.label == 1),
                   tuple(str(d / r.path) for r in sorted(rows, key=lambda r: r.clip_id) if r.label == 0))


def _expand(root: Path, patterns: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(str(root / pat), recursive=True))
        if not hits:
            logger.warning("pattern %s matched no files under %s", pat, root)
        out += [h for h in hits if Path(h).is_file()]
    return tuple(dict.fromkeys(out))


def load_set_audio(s: EvalSet, progress: bool = True):
    """Decode every file once: (positives [(path, audio)], negatives [(path, audio)], skipped)."""
    skipped: list[dict] = []
    pos: list[tuple[str, np.ndarray]] = []
    neg: list[tuple[str, np.ndarray]] = []
    for files, out in ((s.positives, pos), (s.negatives, neg)):
        for f in tqdm(files, desc=f"reading {s.name}", disable=not progress, leave=False):
            try:
                out.append((f, load_audio(f)))
            except AudioError as exc:
                skipped.append({"file": f, "reason": str(exc)})
    return pos, neg, skipped


def evaluate(detector: StreamDetector | TrackScorer, sets: list[EvalSet], out_dir: str | Path,
             max_fpr: float = MAX_FPR, threshold: float | None = None, progress: bool = True,
             cfg: ScoringConfig | None = None, refractory_s: float = REFRACTORY_S) -> dict:
    """Evaluate on each set by the one protocol; writes report.json, det.png and roc.png into ``out_dir``.

    threshold: for the FA/h and FRR at a fixed threshold; None: the detector's own (its calibrated threshold).
    """
    det = as_detector(detector)
    cfg = cfg or ScoringConfig()
    thr = det.default_threshold if threshold is None else float(threshold)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = getattr(det, "metadata", {}) or {}
    report: dict = {"model": meta.get("path", ""), "features": det.feat.to_dict() if hasattr(det, "feat") else {},
                    "sets": {}}
    det_curves, roc = {}, {}
    for s in sets:
        pos, neg, skipped = load_set_audio(s, progress)
        sc = score_set(det, pos, neg, skipped, cfg, progress=progress, phrase=s.phrase)
        res = summarise(sc, max_fpr, thr, refractory_s)
        res["top_false_accepts"] = top_false_accepts(sc)
        res["lowest_positives"] = lowest_positives(sc)
        res["skipped"] = sc.skipped[:50]
        report["sets"][s.name] = res
        fa, frr = metrics.fa_frr_curve(sc.pos_scores, sc.neg_streams, sc.hop_s, refractory_s,
                                       max_fa_per_hour=200.0)[1:]
        det_curves[s.name] = (fa, frr)
        roc[s.name] = (np.r_[np.ones(len(sc.pos_scores)), np.zeros(len(sc.neg_clip_scores))],
                       np.r_[sc.pos_scores, sc.neg_clip_scores])
    metrics.plot_det(det_curves, out_dir / "det.png", title="DET: false rejects vs false accepts per hour")
    metrics.plot_roc(roc, out_dir / "roc.png", max_fpr=max_fpr)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def markdown_table(report: dict) -> str:
    """A compact table of a report, for docs and the console."""
    lines = [("| set | pos | neg clips | neg hours | pAUC@{0} | EER | FRR@0.1 FA/h | FRR@0.5 FA/h | FRR@1 FA/h | "
              "FA/h @{t} | FRR @{t} |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["sets"].items():
        f = r["frr_at_fa_per_hour"]
        lines.append(f"| {name} | {r['n_positive']} | {r['n_negative_clips']} | {r['negative_hours']:.2f} | "
                     f"{r['pauc']:.3f} | {r['eer']:.3f} | {f['0.1']['frr']:.3f} | {f['0.5']['frr']:.3f} | "
                     f"{f['1.0']['frr']:.3f} | {r['fa_per_hour_at_threshold']:.2f} | {r['frr_at_threshold']:.3f} |")
    first: dict = next(iter(report["sets"].values()), {})
    t = first.get("threshold", float("nan"))
    lines[0] = lines[0].replace("{0}", str(first.get("max_fpr", MAX_FPR))).replace("{t}", f"{t:.4g}")
    return "\n".join(lines)


__all__ = ["FA_TARGETS", "EvalSet", "SetScores", "clip_maxima", "evaluate", "load_set_audio", "lowest_positives",
           "markdown_table", "score_set", "summarise", "top_false_accepts"]
