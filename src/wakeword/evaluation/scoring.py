"""The one scoring protocol: how any detector is scored on a set of clips, by every surface (``wakeword eval``,
``wakeword bench``, the UI's Benchmark job, the experiments, the export's accuracy report and training's
validation).

Protocol:
- each positive clip gets ``lead_s`` of silence before it and ``tail_s`` after it (half a window each by
  default), is scored on its own from a fresh detector state, and its score is the maximum over everything
  the detector produced for it;
- negatives are laid end to end, in the given order, into continuous streams (a stream ends at the first clip
  boundary after ``stream_s`` seconds; the detector's state is reset between streams only); a negative clip's
  score (for pAUC) is the max over the scores whose audio ends inside it; false accepts are rising threshold
  crossings with a refractory period (``metrics``);
- the threshold of the fixed-threshold figures is the model's own (``defaults.model_threshold``) unless the
  caller gives one.

Detectors: anything with ``reset()`` / ``process(audio)`` (``StreamDetector``: the benchmark's peers and streaming
exports), or anything with ``score_track(audio)`` and a ``feat`` (``TrackScorer``: checkpoints, window exports,
training's scorers), which ``as_detector`` wraps. This module sits below training in the dependency order
(training's validation imports it): it needs the dataset layer and the metrics only.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm import tqdm

from wakeword.defaults import (
    FA_TARGETS,
    FALLBACK_THRESHOLD,
    MAX_FPR,
    REFRACTORY_S,
    SAMPLE_RATE,
    STREAM_S,
    WINDOW_S,
)
from wakeword.evaluation import metrics

POSITIVE_PAD_S = WINDOW_S / 2  # seconds of silence on each side of a positive clip: the word can sit anywhere


@runtime_checkable
class TrackScorer(Protocol):
    """Scores a whole track at once; stateless. ``score_track(audio) -> (scores (n,), hop_s)``, score ``k``
    belongs to the window ending at ``k * hop_s + feat.window_s`` seconds."""

    feat: Any  # a FeatureConfig: sample_rate, window_s, window_samples, score_hop_s

    def score_track(self, audio: np.ndarray) -> tuple[np.ndarray, float]: ...


@runtime_checkable
class StreamDetector(Protocol):
    """A detector as the protocol drives it: ``reset()`` (fresh state), then ``process(audio)`` with float32 mono
    audio at 16 kHz, returning the scores produced for that audio; score ``i`` belongs to the audio that ends at
    ``first_end_s + i * hop_s`` seconds after the reset."""

    name: str  # shown in reports
    kind: str  # torch, onnx, onnx-int8, onnx-streaming, openwakeword, microwakeword, ensemble
    phrase: str | None  # what it was trained for (None: unknown)
    sample_rate: int  # Hz
    hop_s: float  # seconds between two scores
    first_end_s: float  # seconds of audio after a reset that the first score covers
    default_threshold: float  # its own threshold

    def reset(self) -> None: ...

    def process(self, audio: np.ndarray) -> np.ndarray: ...


class TrackDetector:
    """A ``TrackScorer`` (a checkpoint's ``Detector``, a window export, training's scorers) as a ``StreamDetector``:
    stateless, each ``process`` call scores its audio window by window (audio shorter than one window is padded
    to one window)."""

    cost_measured = True  # False: scores come from cached embeddings, so CPU time says nothing of the model's cost

    def __init__(self, scorer: TrackScorer, name: str = "model", phrase: str | None = None, kind: str = "torch"):
        self.det, self.name, self.phrase, self.kind = scorer, name, phrase, kind
        f = scorer.feat
        if f.sample_rate != SAMPLE_RATE:
            raise ValueError(f"{name}: model sample rate {f.sample_rate} Hz, the protocol runs at {SAMPLE_RATE}")
        self.feat = f
        self.sample_rate = f.sample_rate
        self.hop_s = f.score_hop_s
        self.first_end_s = f.window_s
        self.metadata: dict = getattr(scorer, "metadata", None) or {}
        self.source = str(self.metadata.get("path", ""))  # identity for result caches (load_detector: path+mtime)
        self.default_threshold = float(getattr(scorer, "default_threshold", FALLBACK_THRESHOLD))

    def reset(self) -> None:
        pass

    def process(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        n = self.feat.window_samples
        if len(audio) < n:
            audio = np.concatenate([audio, np.zeros(n - len(audio), np.float32)])
        return np.asarray(self.det.score_track(audio)[0], np.float32)


def as_detector(x: StreamDetector | TrackScorer, name: str = "model") -> StreamDetector:
    """``x`` itself when it follows the streaming protocol, else ``x`` wrapped in a ``TrackDetector``."""
    if isinstance(x, StreamDetector):
        return x
    if isinstance(x, TrackScorer):
        return TrackDetector(x, name)
    raise TypeError(f"{type(x).__name__} is neither a StreamDetector (reset/process) nor a TrackScorer (score_track)")


@dataclass(frozen=True)
class ScoringConfig:
    lead_s: float = POSITIVE_PAD_S  # silence before each positive clip
    tail_s: float = POSITIVE_PAD_S  # silence after each positive clip (its scores count)
    stream_s: float = STREAM_S  # a negative stream ends at the first clip boundary after this many seconds

    def __post_init__(self):
        if self.lead_s < 0 or self.tail_s < 0 or self.stream_s <= 0:
            raise ValueError("lead_s and tail_s must be >= 0 and stream_s > 0")


def pad_positive(audio: np.ndarray, cfg: ScoringConfig | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A positive clip with the protocol's silence around it (float32)."""
    cfg = cfg or ScoringConfig()
    lead, tail = np.zeros(int(cfg.lead_s * sr), np.float32), np.zeros(int(cfg.tail_s * sr), np.float32)
    return np.concatenate([lead, np.asarray(audio, np.float32), tail])


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
    first_end_s: float = 0.0  # seconds of a stream the first score covers (to place false accepts in clips)
    cost: dict = field(default_factory=dict)  # cpu_s, audio_s, cpu_s_per_audio_hour of the detector's calls


def clip_maxima(scores: np.ndarray, ends: np.ndarray, lengths_s: Sequence[float]) -> list[float]:
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


def same_phrase(a: str | None, b: str | None) -> bool:
    """Whether a detector is meant for a set's positives (unknown on either side counts as yes)."""
    from wakeword.dataset.text import normalise

    if not a or not b:
        return True
    return normalise(a) == normalise(b)


def score_set(detector: StreamDetector | TrackScorer, pos: Sequence[tuple[str, np.ndarray]],
              neg: Sequence[tuple[str, np.ndarray]], skipped: Sequence[dict] = (), cfg: ScoringConfig | None = None,
              progress: bool = True, phrase: str | None = None, padded: bool = False) -> SetScores:
    """Score decoded audio by the protocol (module docstring).

    pos / neg: (file, float32 audio at 16 kHz) in order; phrase: what the positives say (a detector of another
    phrase skips them); padded: the positives already carry the lead and tail (the benchmark pads before mixing
    noise in, so the noise covers the silence too). The CPU time of the detector's calls is in ``.cost``.
    """
    det = as_detector(detector)
    cfg = cfg or ScoringConfig()
    clock = 0.0
    audio_s = 0.0

    def run(audio: np.ndarray) -> np.ndarray:
        nonlocal clock, audio_s
        det.reset()
        t = time.process_time()
        s = np.asarray(det.process(audio), np.float32)
        clock += time.process_time() - t
        audio_s += len(audio) / SAMPLE_RATE
        return s

    pos_scores, pos_files = [], []
    if same_phrase(det.phrase, phrase):
        for f, a in tqdm(pos, desc=f"{det.name}: positives", disable=not progress, leave=False):
            s = run(a if padded else pad_positive(a, cfg))
            pos_scores.append(float(s.max()) if len(s) else 0.0)
            pos_files.append(f)
    streams: list[np.ndarray] = []
    clip_scores: list[float] = []
    clip_files: list[tuple[str, tuple[int, float]]] = []
    group: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if not group:
            return
        s = run(np.concatenate([a for _, a in group]))
        streams.append(s)
        ends = det.first_end_s + np.arange(len(s)) * det.hop_s
        lengths = [len(a) / SAMPLE_RATE for _, a in group]
        clip_scores.extend(clip_maxima(s, ends, lengths))
        starts = np.cumsum([0.0] + lengths[:-1])
        clip_files.extend((f, (len(streams) - 1, float(t))) for (f, _), t in zip(group, starts))
        group.clear()

    total = 0
    for f, a in tqdm(neg, desc=f"{det.name}: negatives", disable=not progress, leave=False):
        group.append((f, a))
        total += len(a)
        if total >= cfg.stream_s * SAMPLE_RATE:
            flush()
            total = 0
    flush()
    cost = {"cpu_s": clock, "audio_s": audio_s,
            "cpu_s_per_audio_hour": clock / audio_s * 3600 if audio_s else float("nan")}
    if not getattr(det, "cost_measured", True):  # cached embeddings: the clock saw only part of the work
        cost["cpu_s"] = cost["cpu_s_per_audio_hour"] = float("nan")
    return SetScores(np.array(pos_scores), np.array(clip_scores), streams, det.hop_s, [f for f, _ in clip_files],
                     pos_files, list(skipped), [p for _, p in clip_files], det.first_end_s, cost)


def summarise(sc: SetScores, max_fpr: float = MAX_FPR, threshold: float = FALLBACK_THRESHOLD,
              refractory_s: float = REFRACTORY_S) -> dict:
    """Metrics of one scored set (raises when positives or negatives are missing). ``threshold``: give the
    model's own (``detector.default_threshold``); the fallback is there for score arrays of no model."""
    if len(sc.pos_scores) == 0 or len(sc.neg_clip_scores) == 0:
        raise ValueError("evaluation needs both positive and negative audio")
    labels = np.r_[np.ones(len(sc.pos_scores)), np.zeros(len(sc.neg_clip_scores))]
    scores = np.r_[sc.pos_scores, sc.neg_clip_scores]
    p = metrics.pauc(labels, scores, max_fpr)
    e, e_thr = metrics.eer(labels, scores)
    hours = sum(len(s) for s in sc.neg_streams) * sc.hop_s / 3600
    out: dict = {
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


def false_accept_sources(sc: SetScores, threshold: float, refractory_s: float = REFRACTORY_S,
                         k: int = 10) -> list[dict]:
    """Which negative files the false accepts at ``threshold`` came from (events counted per file)."""
    counts: Counter = Counter()
    for i, s in enumerate(sc.neg_streams):
        members = [j for j, (si, _) in enumerate(sc.clip_places) if si == i]
        if not len(s) or not members:
            continue
        starts = np.array([sc.clip_places[j][1] for j in members])
        for t in metrics.detect_events(s, threshold, sc.hop_s, refractory_s) + sc.first_end_s:
            # the event's window ends at t: blame the clip that holds its last sample
            j = members[max(0, int(np.searchsorted(starts, t - 1e-9, side="left")) - 1)]
            counts[sc.neg_files[j]] += 1
    return [{"file": f, "false_accepts": n} for f, n in counts.most_common(k)]


def top_false_accepts(sc: SetScores, k: int = 10) -> list[dict]:
    """The negative clips that scored highest."""
    order = np.argsort(-sc.neg_clip_scores)[:k]
    return [{"file": sc.neg_files[i], "score": float(sc.neg_clip_scores[i])} for i in order]


def lowest_positives(sc: SetScores, k: int = 10) -> list[dict]:
    """The wake-word clips the detector was least sure of (the false rejects at strict thresholds)."""
    order = np.argsort(sc.pos_scores)[:k]
    return [{"file": sc.pos_files[i], "score": float(sc.pos_scores[i])} for i in order]


__all__ = ["POSITIVE_PAD_S", "ScoringConfig", "SetScores", "StreamDetector", "TrackDetector", "TrackScorer",
           "as_detector", "clip_maxima", "false_accept_sources", "lowest_positives", "pad_positive", "same_phrase",
           "score_set", "summarise", "top_false_accepts"]
