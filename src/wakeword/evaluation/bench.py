"""`wakeword bench`: several detectors, the one scoring protocol (``evaluation.scoring``), the same audio.

What the benchmark adds to the protocol:
- with ``snr_db``, a noise file drawn from the set's noise list is mixed into every clip (padding
  included) at that SNR, the clip's active-speech level over the noise power (``audio.mixing.mix_at_snr``,
  level "active"); the draw (file and offset) is seeded by the clip's path, so every detector and every run
  hears the same noisy audio;
- CPU seconds per audio hour: process CPU time spent in the detector's ``process`` calls (always one
  thread: torch is set to one, onnxruntime sessions are made with one) over the hours of audio given;
- which negative files the false accepts at each detector's own threshold came from.

Thresholds are swept exactly (every positive score, every negative peak and just above it), so the
low-FA operating points are exact, not interpolated.
"""
from __future__ import annotations

import json
import logging
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wakeword.audio.io import SAMPLE_RATE
from wakeword.audio.mixing import active_level, mix_at_snr
from wakeword.defaults import FA_TARGETS, MAX_FPR, REFRACTORY_S, STREAM_S
from wakeword.evaluation import metrics
from wakeword.evaluation.evaluate import EvalSet, load_set_audio
from wakeword.evaluation.scoring import (
    POSITIVE_PAD_S,
    ScoringConfig,
    SetScores,
    StreamDetector,
    false_accept_sources,
    pad_positive,
    score_set,
    summarise,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    snr_db: float | None = None  # mix the set's noise into every clip at this SNR (None: clean)
    lead_s: float = POSITIVE_PAD_S  # silence before each positive clip (the scoring protocol's)
    tail_s: float = POSITIVE_PAD_S  # silence after each positive clip (its scores count)
    stream_s: float = STREAM_S  # a negative stream ends at the first clip boundary after this many seconds
    refractory_s: float = REFRACTORY_S  # a detector fires at most once per this many seconds
    max_fpr: float = MAX_FPR  # clip pAUC range
    top_k: int = 10  # false-accept sources listed per detector

    def __post_init__(self):
        if self.lead_s < 0 or self.tail_s < 0 or self.stream_s <= 0 or self.refractory_s < 0:
            raise ValueError("lead_s, tail_s, refractory_s must be >= 0 and stream_s > 0")
        if not 0 < self.max_fpr <= 1:
            raise ValueError("max_fpr must be in (0, 1]")

    @property
    def scoring(self) -> ScoringConfig:
        return ScoringConfig(self.lead_s, self.tail_s, self.stream_s)


def clip_seed(path: str) -> int:
    """A seed from a clip's path (its last three components, so the same files elsewhere draw alike)."""
    key = "/".join(Path(path).parts[-3:])
    return zlib.crc32(key.encode())


def add_noise(audio: np.ndarray, noise: list[np.ndarray], snr_db: float, seed: int) -> np.ndarray:
    """``audio`` + a seeded excerpt of one of ``noise`` at ``snr_db`` (active level over noise power)."""
    rng = np.random.default_rng(seed)
    src = noise[int(rng.integers(len(noise)))]
    if len(src) < len(audio):
        src = np.tile(src, int(np.ceil(len(audio) / len(src))) + 1)
    start = int(rng.integers(0, len(src) - len(audio) + 1))
    return mix_at_snr(audio, src[start:start + len(audio)], snr_db, level="active")


@dataclass
class PreparedSet:
    """A set's audio as every detector will hear it."""
    name: str
    phrase: str | None
    positives: list[tuple[str, np.ndarray]]  # padded (and noisy) positive clips
    negatives: list[tuple[str, np.ndarray]]  # (noisy) negative clips, in stream order
    skipped: list[dict]


def prepare_set(s: EvalSet, cfg: BenchConfig, progress: bool = True) -> PreparedSet:
    pos, neg, skipped = load_set_audio(s, progress)
    if cfg.snr_db is not None:
        if not s.noise:
            raise ValueError(f"set '{s.name}' lists no noise files: add `noise:` globs to its YAML or drop --snr")
        noise = [a for _, a in load_set_audio(EvalSet("noise", negatives=s.noise), progress)[1]]
        if not noise:
            raise ValueError(f"set '{s.name}': none of its noise files could be read")
    pos = [(f, pad_positive(a, cfg.scoring, SAMPLE_RATE)) for f, a in pos]
    if cfg.snr_db is not None:
        pos = [(f, add_noise(a, noise, cfg.snr_db, clip_seed(f))) for f, a in pos]
        neg = [(f, add_noise(a, noise, cfg.snr_db, clip_seed(f))) for f, a in neg]
    return PreparedSet(s.name, s.phrase, pos, neg, skipped)


def score_detector(det: StreamDetector, ps: PreparedSet, cfg: BenchConfig, progress: bool = True
                   ) -> tuple[SetScores, dict]:
    """Scores of one detector on a prepared set by the one protocol, and its cost (CPU seconds, audio seconds)."""
    sc = score_set(det, ps.positives, ps.negatives, ps.skipped, cfg.scoring, progress, phrase=ps.phrase, padded=True)
    return sc, sc.cost


def summarise_detector(sc: SetScores, det: StreamDetector, cfg: BenchConfig) -> dict:
    if not sum(len(s) for s in sc.neg_streams):
        raise ValueError(f"{det.name} produced no score for the negatives (shorter than its first window?)")
    thr = det.default_threshold
    hours = sum(len(s) for s in sc.neg_streams) * sc.hop_s / 3600
    res: dict = {"default_threshold": thr, "negative_hours": round(hours, 4), "n_negative_clips": len(sc.neg_clip_scores),
                 "fa_per_hour_at_default": metrics.false_accepts_per_hour(sc.neg_streams, thr, sc.hop_s, cfg.refractory_s),
                 "n_positive": len(sc.pos_scores)}
    if len(sc.pos_scores):
        m = summarise(sc, cfg.max_fpr, thr, cfg.refractory_s)
        res.update({"pauc": m["pauc"], "auc": m["auc"], "eer": m["eer"], "max_fpr": cfg.max_fpr,
                    "frr_at_default": m["frr_at_threshold"], "frr_at_fa_per_hour": m["frr_at_fa_per_hour"],
                    "aut_frr_fa_0_1": m["aut_frr_fa_0_1"]})
    res["top_false_accept_sources"] = false_accept_sources(sc, thr, cfg.refractory_s, cfg.top_k)
    return res


def run_bench(detectors: list, sets: list[EvalSet], cfg: BenchConfig, out_dir: str | Path,
              progress: bool = True) -> dict:
    """Score every detector on every set; writes bench.json, bench.md and det_<set>.png into ``out_dir``."""
    if not detectors:
        raise ValueError("no detectors to benchmark")
    if not sets:
        raise ValueError("no sets to benchmark on")
    names = [d.name for d in detectors]
    if len(set(names)) != len(names):
        raise ValueError(f"detector names must differ (use label=spec): {names}")
    _one_thread()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"config": asdict(cfg), "detectors": {d.name: {"kind": d.kind, "phrase": d.phrase,
                                                                  "hop_s": d.hop_s} for d in detectors},
                    "sets": {}}
    for s in sets:
        ps = prepare_set(s, cfg, progress)
        if not ps.negatives:
            raise ValueError(f"set '{s.name}' has no negative audio: false accepts per hour need it")
        entry: dict = {"phrase": ps.phrase, "n_positive_files": len(ps.positives), "skipped": ps.skipped[:50],
                       "detectors": {}}
        curves = {}
        for det in detectors:
            sc, cost = _cached_scores(det, ps, s, cfg, out_dir, progress)
            res = summarise_detector(sc, det, cfg)
            res.update({k: round(v, 4) for k, v in cost.items()})
            entry["detectors"][det.name] = res
            if len(sc.pos_scores):
                fa, frr = metrics.fa_frr_curve(sc.pos_scores, sc.neg_streams, sc.hop_s, cfg.refractory_s,
                                               max_fa_per_hour=200.0)[1:]
                curves[det.name] = (fa, frr)
            logger.info("%s on %s: %s", det.name, s.name,
                        {k: v for k, v in res.items() if k != "top_false_accept_sources"})
        if curves:
            plot = out_dir / f"det_{_slug(s.name)}.png"
            title = f"{s.name}" + (f", noise at {cfg.snr_db:g} dB SNR" if cfg.snr_db is not None else ", clean")
            metrics.plot_det(curves, plot, title=title)
            entry["det_plot"] = plot.name
        report["sets"][s.name] = entry
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    (out_dir / "bench.md").write_text(markdown(report) + "\n")
    return report


def _cached_scores(det, ps: PreparedSet, s: EvalSet, cfg: BenchConfig, out_dir: Path, progress: bool):
    """score_detector, kept per (set, detector) under out_dir/scores: a killed bench resumes with the
    detectors it had finished (same protocol, same files and same detector file; else they are redone)."""
    key = {"config": asdict(cfg), "set": s.name, "files": [f for f, _ in ps.positives] + [f for f, _ in ps.negatives],
           "detector": det.name, "kind": det.kind, "source": str(getattr(det, "source", ""))}
    stem = out_dir / "scores" / f"{_slug(s.name)}__{_slug(det.name)}"
    if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
        saved = json.loads(stem.with_suffix(".json").read_text())
        if saved["key"] == key:
            z = np.load(stem.with_suffix(".npz"))
            lengths = z["stream_lengths"]
            streams = np.split(z["streams"], np.cumsum(lengths)[:-1]) if len(lengths) else []
            sc = SetScores(z["pos_scores"], z["neg_clip_scores"], list(streams), float(z["hop_s"]),
                           saved["neg_files"], saved["pos_files"], list(ps.skipped),
                           [tuple(p) for p in saved["clip_places"]], det.first_end_s, saved["cost"])
            logger.info("%s on %s: scores from %s", det.name, s.name, stem.with_suffix(".npz"))
            return sc, saved["cost"]
    sc, cost = score_detector(det, ps, cfg, progress)
    stem.parent.mkdir(parents=True, exist_ok=True)
    np.savez(stem.with_suffix(".npz"), pos_scores=sc.pos_scores, neg_clip_scores=sc.neg_clip_scores,
             streams=np.concatenate(sc.neg_streams) if sc.neg_streams else np.zeros(0, np.float32),
             stream_lengths=np.array([len(x) for x in sc.neg_streams], dtype=np.int64), hop_s=sc.hop_s)
    stem.with_suffix(".json").write_text(json.dumps({"key": key, "cost": cost, "neg_files": sc.neg_files,
                                                     "pos_files": sc.pos_files, "clip_places": sc.clip_places}))
    return sc, cost


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower() or "set"


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def markdown(report: dict) -> str:
    """One table per set: accuracy at fixed FA/h, at each detector's default threshold, and cost."""
    out = []
    snr = report["config"]["snr_db"]
    for set_name, entry in report["sets"].items():
        out.append(f"**{set_name}** ({'clean' if snr is None else f'noise at {snr:g} dB SNR'}; "
                   f"{entry['n_positive_files']} positive clips)\n")
        out.append("| detector | positives scored | neg. hours | pAUC@0.1 | FRR@0.1 FA/h | FRR@0.5 FA/h | FRR@1 FA/h "
                   "| AUT [0,1] FA/h | threshold | FA/h @thr | FRR @thr | CPU s / audio h |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in entry["detectors"].items():
            if r["n_positive"]:
                f = r["frr_at_fa_per_hour"]
                acc = (f"{r['pauc']:.3f} | " + " | ".join(f"{f[str(t)]['frr']:.3f}" for t in FA_TARGETS)
                       + f" | {r['aut_frr_fa_0_1']:.3f}")
                frr_d = f"{r['frr_at_default']:.3f}"
            else:
                acc, frr_d = "– | – | – | – | –", "–"
            out.append(f"| {name} | {r['n_positive']} | {r['negative_hours']:.2f} | {acc} | {r['default_threshold']:.3g} "
                       f"| {r['fa_per_hour_at_default']:.2f} | {frr_d} | {r['cpu_s_per_audio_hour']:.1f} |")
        out.append("")
    return "\n".join(out)


__all__ = [
    "BenchConfig",
    "PreparedSet",
    "active_level",
    "add_noise",
    "clip_seed",
    "false_accept_sources",
    "markdown",
    "prepare_set",
    "run_bench",
    "score_detector",
]
