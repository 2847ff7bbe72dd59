"""Evaluation of a detector on clip sets and continuous negative audio.

Protocol (one for every set): each positive clip is padded with half a window of silence on both
sides and scored on its own (score = max over its windows). Negatives are concatenated, in a fixed
order, into continuous streams of at most ``stream_s`` seconds and scored window by window: false
accepts are rising threshold crossings with a refractory period, and a negative clip's score (for
pAUC) is the max over the windows that end inside it.
"""
from __future__ import annotations

import glob
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wakeword.audio.io import AudioError, load_audio
from wakeword.dataset.manifest import read_manifest, select
from wakeword.dataset.torch_data import pad_for_scoring
from wakeword.defaults import is_audio
from wakeword.evaluation import metrics

logger = logging.getLogger(__name__)

FA_TARGETS = (0.1, 0.5, 1.0)  # false accepts per hour at which false-reject rates are reported


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


@dataclass
class SetScores:
    """Everything the metrics need; detector-independent layout so several detectors compare exactly."""
    pos_scores: np.ndarray  # (n_pos,) max score per positive clip
    neg_clip_scores: np.ndarray  # (n_neg,) max score per negative clip
    neg_streams: list[np.ndarray]  # per-window scores of each continuous negative stream
    hop_s: float  # seconds between two scores of a stream
    neg_files: list[str] = field(default_factory=list)
    pos_files: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    clip_places: list[tuple[int, float]] = field(default_factory=list)  # per negative clip: (stream, start s)


def load_set_audio(s: EvalSet, progress: bool = True):
    """Decode every file once: (positives [(path, audio)], negatives [(path, audio)], skipped)."""
    skipped, pos, neg = [], [], []
    for files, out in ((s.positives, pos), (s.negatives, neg)):
        for f in tqdm(files, desc=f"reading {s.name}", disable=not progress, leave=False):
            try:
                out.append((f, load_audio(f)))
            except AudioError as exc:
                skipped.append({"file": f, "reason": str(exc)})
    return pos, neg, skipped


def clip_maxima(scores: np.ndarray, ends: np.ndarray, lengths_s: list[float]) -> list[float]:
    """Score of each clip of a continuous stream: the max over the scores whose audio ends inside it.

    scores: (n,) scores of the stream; ends: (n,) time (s) at which each score's audio ends;
    lengths_s: the clips' durations, in stream order. A clip no score ends in (shorter than a hop,
    or before the first score) gets the first score that ends after it.
    """
    out, start = [], 0.0
    for length in lengths_s:
        end = start + length
        m = (ends > start) & (ends <= end + 1e-9)
        if m.any():
            out.append(float(scores[m].max()))
        elif len(scores):
            out.append(float(scores[min(len(scores) - 1, int(np.searchsorted(ends, end)))]))
        else:
            out.append(0.0)
        start = end
    return out


def score_set(detector, pos, neg, skipped=(), stream_s: float = 600.0, progress: bool = True) -> SetScores:
    """Score decoded audio with anything that has ``score_track(audio) -> (scores, hop_s)``."""
    feat = detector.feat
    pos_scores = []
    for _, a in tqdm(pos, desc="positives", disable=not progress, leave=False):
        s, hop = detector.score_track(pad_for_scoring(a, feat))
        pos_scores.append(float(s.max()))
    streams, clip_scores = [], []
    hop = feat.score_hop_s
    win = feat.window_s
    group: list[np.ndarray] = []
    group_len = 0

    def flush():
        nonlocal group, group_len
        if not group:
            return
        audio = np.concatenate(group)
        s, _ = detector.score_track(audio)
        streams.append(s)
        ends = np.arange(len(s)) * hop + win  # end time of each window
        clip_scores.extend(clip_maxima(s, ends, [len(a) / feat.sample_rate for a in group]))
        group, group_len = [], 0

    for _, a in tqdm(neg, desc="negatives", disable=not progress, leave=False):
        group.append(a)
        group_len += len(a)
        if group_len >= stream_s * feat.sample_rate:
            flush()
    flush()
    return SetScores(np.array(pos_scores), np.array(clip_scores), streams, hop, [f for f, _ in neg],
                     [f for f, _ in pos], list(skipped))


def summarise(sc: SetScores, max_fpr: float = 0.1, threshold: float = 0.5, refractory_s: float = 1.0) -> dict:
    """Metrics of one scored set (raises when positives or negatives are missing)."""
    if len(sc.pos_scores) == 0 or len(sc.neg_clip_scores) == 0:
        raise ValueError("evaluation needs both positive and negative audio")
    labels = np.r_[np.ones(len(sc.pos_scores)), np.zeros(len(sc.neg_clip_scores))]
    scores = np.r_[sc.pos_scores, sc.neg_clip_scores]
    p = metrics.pauc(labels, scores, max_fpr)
    e, e_thr = metrics.eer(labels, scores)
    hours = sum(len(s) for s in sc.neg_streams) * sc.hop_s / 3600
    out = {
        "n_positive": len(sc.pos_scores),
        "n_negative_clips": len(sc.neg_clip_scores),
        "negative_hours": round(hours, 4),
        "pauc": p.normalised,
        "pauc_mcclish": p.mcclish,
        "max_fpr": max_fpr,
        "auc": metrics.pauc(labels, scores, 1.0).normalised,
        "eer": e,
        "eer_threshold": e_thr,
        "threshold": threshold,
        "fa_per_hour_at_threshold": metrics.false_accepts_per_hour(sc.neg_streams, threshold, sc.hop_s, refractory_s),
        "frr_at_threshold": float(np.mean(sc.pos_scores < threshold)),
        "frr_at_fa_per_hour": {},
        "skipped_files": len(sc.skipped),
    }
    for target in FA_TARGETS:
        op = metrics.frr_at_fa_per_hour(sc.pos_scores, sc.neg_streams, sc.hop_s, target, refractory_s)
        out["frr_at_fa_per_hour"][str(target)] = {"frr": op.frr, "threshold": op.threshold,
                                                  "fa_per_hour": op.fa_per_hour}
    out["aut_frr_fa_0_1"] = metrics.area_under_frr_curve(sc.pos_scores, sc.neg_streams, sc.hop_s, 1.0, refractory_s)
    return out


def top_false_accepts(sc: SetScores, k: int = 10) -> list[dict]:
    order = np.argsort(-sc.neg_clip_scores)[:k]
    return [{"file": sc.neg_files[i], "score": float(sc.neg_clip_scores[i])} for i in order]


def lowest_positives(sc: SetScores, k: int = 10) -> list[dict]:
    """The wake-word clips the detector was least sure of (the false rejects at strict thresholds)."""
    order = np.argsort(sc.pos_scores)[:k]
    return [{"file": sc.pos_files[i], "score": float(sc.pos_scores[i])} for i in order]


def evaluate(detector, sets: list[EvalSet], out_dir: str | Path, max_fpr: float = 0.1, threshold: float = 0.5,
             progress: bool = True) -> dict:
    """Evaluate on each set; writes report.json, det.png and roc.png into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"model": detector.metadata.get("path", ""), "features": detector.feat.to_dict(), "sets": {}}
    det_curves, roc = {}, {}
    for s in sets:
        pos, neg, skipped = load_set_audio(s, progress)
        sc = score_set(detector, pos, neg, skipped, progress=progress)
        res = summarise(sc, max_fpr, threshold)
        res["top_false_accepts"] = top_false_accepts(sc)
        res["lowest_positives"] = lowest_positives(sc)
        res["skipped"] = sc.skipped[:50]
        report["sets"][s.name] = res
        fa, frr = metrics.fa_frr_curve(sc.pos_scores, sc.neg_streams, sc.hop_s, max_fa_per_hour=200.0)[1:]
        det_curves[s.name] = (fa, frr)
        roc[s.name] = (np.r_[np.ones(len(sc.pos_scores)), np.zeros(len(sc.neg_clip_scores))],
                       np.r_[sc.pos_scores, sc.neg_clip_scores])
    metrics.plot_det(det_curves, out_dir / "det.png", title="DET: false rejects vs false accepts per hour")
    metrics.plot_roc(roc, out_dir / "roc.png", max_fpr=max_fpr)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def markdown_table(report: dict) -> str:
    """A compact table of a report, for docs and the console."""
    lines = ["| set | pos | neg clips | neg hours | pAUC@{0} | EER | FRR@0.1 FA/h | FRR@0.5 FA/h | FRR@1 FA/h | "
             "FA/h @{t} | FRR @{t} |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["sets"].items():
        f = r["frr_at_fa_per_hour"]
        lines.append(f"| {name} | {r['n_positive']} | {r['n_negative_clips']} | {r['negative_hours']:.2f} | "
                     f"{r['pauc']:.3f} | {r['eer']:.3f} | {f['0.1']['frr']:.3f} | {f['0.5']['frr']:.3f} | "
                     f"{f['1.0']['frr']:.3f} | {r['fa_per_hour_at_threshold']:.2f} | {r['frr_at_threshold']:.3f} |")
    first = next(iter(report["sets"].values()), {})
    t = first.get("threshold", 0.5)
    lines[0] = lines[0].replace("{0}", str(first.get("max_fpr", 0.1))).replace("{t}", f"{t:.4g}")
    return "\n".join(lines)
