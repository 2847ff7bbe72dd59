"""Detection metrics: ROC, pAUC, EER, streaming false accepts per hour, FRR at a FA/h budget, DET plots.

This is the one metrics module of the project: checkpoint selection, HPO objectives and reports all
call it, so a number means the same thing everywhere.

Two kinds of evaluation live here:

* **Clip level** (``roc_curve``, ``pauc``, ``eer``): one score per clip, labels 0/1.
* **Stream level** (``detect_events``, ``false_accepts_per_hour``, ``frr_at_fa_per_hour``,
  ``fa_frr_curve``, ``area_under_frr_curve``): negatives are continuous streams of per-frame
  scores, frame ``i`` at time ``i * hop_s`` seconds; an event is a *rising crossing* of the threshold
  (``score[i] >= threshold`` and ``i == 0 or score[i - 1] < threshold``), and a crossing less than
  ``refractory_s`` seconds after the last accepted event is ignored. Positives are one score per clip
  (the clip's maximum) and are accepted iff ``score >= threshold``.

Every function validates its input and raises ``ValueError`` on empty, mismatched, NaN/inf or
single-class input instead of returning a number that looks like a result.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from wakeword.defaults import MAX_FPR, REFRACTORY_S

if TYPE_CHECKING:  # matplotlib is imported only when plotting
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PAUC",
    "OperatingPoint",
    "area_under_frr_curve",
    "detect_events",
    "eer",
    "fa_frr_curve",
    "false_accepts_per_hour",
    "frr_at_fa_per_hour",
    "pauc",
    "plot_det",
    "plot_roc",
    "roc_curve",
]

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = 3600.0
# FA/h levels that product requirements are usually stated at; marked on DET plots.
DET_MARKS_FA_PER_HOUR = (0.1, 0.5, 1.0)
# Relative slack when converting refractory_s / hop_s to whole frames, so 0.3 s / 0.1 s is 3 frames
# and not 2.9999999999999996 -> 3 by luck or 3.0000000000000004 -> 4 by accident.
_FRAME_RATIO_TOL = 1e-9


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------


def _as_scores(x: ArrayLike | None, name: str) -> np.ndarray:
    """1-D, non-empty, finite float64 copy of ``x``."""
    if x is None:
        raise ValueError(f"{name} is missing (None)")
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s)")
    return arr


def _as_binary(labels: ArrayLike | None, scores: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels as int 0/1, scores as float64), same length, both classes present."""
    y = _as_scores(labels, "labels")
    s = _as_scores(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 0/1, got values {np.unique(y)[:10].tolist()}")
    n_pos = int(np.count_nonzero(y == 1))
    if n_pos == 0 or n_pos == y.size:
        absent = "positive (1)" if n_pos == 0 else "negative (0)"
        raise ValueError(f"labels contain no {absent} example; the metric is undefined with one class")
    return y.astype(np.int64), s


def _check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN")
    return t


def _as_streams(neg_streams: Sequence[ArrayLike] | None) -> list[np.ndarray]:
    """Validated list of 1-D finite float64 streams, none empty."""
    if neg_streams is None:
        raise ValueError("neg_streams is missing (None)")
    if isinstance(neg_streams, np.ndarray) and neg_streams.ndim < 2:
        raise ValueError("neg_streams must be a sequence of 1-D score arrays, got a single array; "
                         "wrap one stream in a list")
    streams = [_as_scores(s, f"neg_streams[{i}]") for i, s in enumerate(neg_streams)]
    if not streams:
        raise ValueError("neg_streams is empty: FA/h needs at least one negative stream")
    return streams


# ----------------------------------------------------------------------------------------------
# clip level
# ----------------------------------------------------------------------------------------------


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic, one point per distinct score.

    Args:
        labels: (n,) 0/1, 1 = positive. Both classes must be present.
        scores: (n,) higher = more likely positive; a clip is accepted iff ``score >= threshold``.

    Returns:
        fpr: (m + 1,) false positive rate, non-decreasing, starting at 0.
        tpr: (m + 1,) true positive rate, non-decreasing, starting at 0.
        thresholds: (m + 1,) decreasing; ``thresholds[0] = +inf`` (nothing accepted), then the ``m``
            distinct scores. Equal to ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    y, s = _as_binary(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each run of tied scores: ties enter the curve together, as one point.
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    fps = last_of_tie + 1 - tps
    tps = np.r_[0, tps].astype(np.float64)
    fps = np.r_[0, fps].astype(np.float64)
    thresholds = np.r_[np.inf, s_sorted[last_of_tie]]
    return fps / fps[-1], tps / tps[-1], thresholds


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


@dataclass(frozen=True)
class PAUC:
    """Partial area under the ROC curve over FPR in [0, max_fpr]."""

    normalised: float  # area / max_fpr, in [0, 1]; 1 = perfect, max_fpr / 2 = chance
    mcclish: float  # McClish standardisation, 0.5 = chance, 1 = perfect; = sklearn roc_auc_score(max_fpr)
    max_fpr: float  # upper FPR bound of the area, in (0, 1]


def pauc(labels: ArrayLike, scores: ArrayLike, max_fpr: float = MAX_FPR) -> PAUC:
    """Partial AUC over FPR in [0, max_fpr], the ROC linearly interpolated at ``max_fpr``.

    Args:
        labels: (n,) 0/1.
        scores: (n,) higher = more likely positive.
        max_fpr: in (0, 1]; at 1 both ``normalised`` and ``mcclish`` equal the plain AUC.
    """
    mf = float(max_fpr)
    if not (0.0 < mf <= 1.0):  # also rejects NaN
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr!r}")
    fpr, tpr, _ = roc_curve(labels, scores)
    stop = int(np.searchsorted(fpr, mf, side="right"))
    if stop < fpr.size:
        tpr_at = float(np.interp(mf, fpr[stop - 1: stop + 1], tpr[stop - 1: stop + 1]))
        fpr = np.r_[fpr[:stop], mf]
        tpr = np.r_[tpr[:stop], tpr_at]
    area = _trapezoid(fpr, tpr)
    min_area, max_area = 0.5 * mf**2, mf
    if mf == 1.0:
        mcclish = area  # the formula below reduces to this; skip it to avoid rounding differences
    else:
        mcclish = 0.5 * (1.0 + (area - min_area) / (max_area - min_area))
    return PAUC(normalised=area / mf, mcclish=float(mcclish), max_fpr=mf)


def eer(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Equal error rate and its threshold.

    FPR and FNR = 1 - TPR are linearly interpolated between consecutive ROC points where
    FPR - FNR changes sign; the threshold is interpolated between the two points' thresholds with the
    same weight. When the crossing lies on the first segment (whose upper end is the +inf threshold)
    the finite threshold of that segment is returned.

    Returns:
        (eer, threshold): eer in [0, 1]; threshold in score units (accept iff score >= threshold).
    """
    fpr, tpr, thr = roc_curve(labels, scores)
    diff = fpr - (1.0 - tpr)  # -1 at thr=+inf, +1 at the lowest threshold
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0:
        return float(fpr[i]), float(thr[i])
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    if np.isinf(thr[i - 1]):
        threshold = thr[i]
    else:
        threshold = thr[i - 1] + w * (thr[i] - thr[i - 1])
    return float(rate), float(threshold)


# ----------------------------------------------------------------------------------------------
# stream level
# ----------------------------------------------------------------------------------------------


def _min_gap_frames(hop_s: float, refractory_s: float) -> int:
    """Smallest frame distance from the last accepted event at which a new event is accepted."""
    return max(0, math.ceil(refractory_s / hop_s - _FRAME_RATIO_TOL))


def _refractory_keep(positions: np.ndarray, min_gap: int) -> np.ndarray:
    """Greedy refractory filter: (k,) sorted frame indices -> the accepted ones, in order."""
    if positions.size <= 1 or min_gap <= 1 or np.all(np.diff(positions) >= min_gap):
        return positions
    kept = [0]
    j = 0
    # Jump straight to the first crossing outside the window: one step per *accepted* event.
    while True:
        j = int(np.searchsorted(positions, positions[j] + min_gap, side="left"))
        if j >= positions.size:
            break
        kept.append(j)
    return positions[kept]


def detect_events(scores: ArrayLike, threshold: float, hop_s: float, refractory_s: float = REFRACTORY_S) -> np.ndarray:
    """Event times in one continuous stream of per-frame scores.

    Args:
        scores: (frames,) per-frame scores; frame ``i`` is at ``i * hop_s`` seconds.
        threshold: an event is a rising crossing, ``score[i] >= threshold`` and
            (``i == 0`` or ``score[i - 1] < threshold``).
        hop_s: frame hop in seconds (> 0).
        refractory_s: seconds (>= 0); a crossing less than this after the last accepted event is
            ignored (one exactly ``refractory_s`` later is accepted).

    Returns:
        (events,) event times in seconds, increasing.
    """
    s = _as_scores(scores, "scores")
    t = _check_threshold(threshold)
    hop = _check_positive(hop_s, "hop_s")
    refr = _check_positive(refractory_s, "refractory_s", allow_zero=True)
    above = s >= t
    rising = above.copy()
    rising[1:] &= ~above[:-1]
    kept = _refractory_keep(np.flatnonzero(rising), _min_gap_frames(hop, refr))
    return kept * hop


def false_accepts_per_hour(neg_streams: Sequence[ArrayLike], threshold: float, hop_s: float,
                           refractory_s: float = REFRACTORY_S) -> float:
    """Events over all negative streams per hour of negative audio.

    Args:
        neg_streams: list of (frames_k,) per-frame score streams, each continuous; the refractory
            window does not carry over from one stream to the next.
        threshold, hop_s, refractory_s: as in ``detect_events``.

    Returns:
        total events / total hours, hours = sum(frames_k) * hop_s / 3600.
    """
    streams = _as_streams(neg_streams)
    hop = _check_positive(hop_s, "hop_s")
    n_events = sum(detect_events(s, threshold, hop, refractory_s).size for s in streams)
    hours = sum(s.size for s in streams) * hop / SECONDS_PER_HOUR
    return n_events / hours


class _StreamIndex:
    """Negative streams preprocessed so FA/h at a high threshold costs O(rising frames above it), not O(frames).

    A rising crossing at frame ``i`` for threshold ``t`` means ``prev[i] < t <= s[i]`` (prev of frame 0
    is -inf), which needs ``s[i] > prev[i]``. Only those frames are kept, sorted by ``s[i]`` descending,
    so the frames that can cross ``t`` are a prefix found by binary search. Streams are laid end to end
    with a gap of more than the refractory window, so the greedy refractory filter over the
    concatenation treats each stream independently.
    """

    def __init__(self, streams: list[np.ndarray], hop_s: float, refractory_s: float) -> None:
        self.min_gap = _min_gap_frames(hop_s, refractory_s)
        his, los, poss, peaks = [], [], [], []
        offset = 0
        for s in streams:
            prev = np.r_[-np.inf, s[:-1]]
            nxt = np.r_[s[1:], -np.inf]
            rise = s > prev
            idx = np.flatnonzero(rise)
            his.append(s[idx])
            los.append(prev[idx])
            poss.append(idx + offset)
            peaks.append(s[rise & (s >= nxt)])
            offset += s.size + self.min_gap + 1
        hi = np.concatenate(his)
        order = np.argsort(-hi, kind="stable")
        self._neg_hi = -hi[order]  # ascending
        self._lo = np.concatenate(los)[order]
        self._lo_sorted = np.sort(self._lo)
        self._pos = np.concatenate(poss)[order]
        self.peaks = np.unique(np.concatenate(peaks))
        self.max_score = float(max(s.max() for s in streams))
        self.hours = sum(s.size for s in streams) * hop_s / SECONDS_PER_HOUR

    def fa_per_hour_no_refractory(self, thresholds: np.ndarray) -> np.ndarray:
        """FA/h at many thresholds at once, valid only when ``min_gap <= 1`` (every crossing counts).

        Crossings at t are rising frames with lo < t <= hi, and lo >= t implies hi >= t, so their
        number is #(hi >= t) - #(lo >= t).
        """
        n_hi = np.searchsorted(self._neg_hi, -thresholds, side="right")
        n_lo = self._lo_sorted.size - np.searchsorted(self._lo_sorted, thresholds, side="left")
        return (n_hi - n_lo) / self.hours

    def fa_per_hour(self, threshold: float) -> float:
        k = int(np.searchsorted(self._neg_hi, -threshold, side="right"))  # rising frames with s >= threshold
        pos = self._pos[:k][self._lo[:k] < threshold]
        return _refractory_keep(np.sort(pos), self.min_gap).size / self.hours


def _prepare(pos_scores: ArrayLike, neg_streams: Sequence[ArrayLike], hop_s: float,
             refractory_s: float) -> tuple[np.ndarray, _StreamIndex, np.ndarray]:
    """(sorted positives, stream index, candidate thresholds descending)."""
    pos = np.sort(_as_scores(pos_scores, "pos_scores"))
    streams = _as_streams(neg_streams)
    hop = _check_positive(hop_s, "hop_s")
    refr = _check_positive(refractory_s, "refractory_s", allow_zero=True)
    index = _StreamIndex(streams, hop, refr)
    top = max(float(pos[-1]), index.max_score)
    ceiling = top + 1.0
    if not ceiling > top:  # huge scores: +1 is lost to rounding
        ceiling = float(np.nextafter(top, np.inf))
    # FRR changes only at positive scores; new events appear at negative peaks and vanish just above.
    candidates = np.unique(np.concatenate([pos, index.peaks, np.nextafter(index.peaks, np.inf), [ceiling]]))
    return pos, index, candidates[::-1]


def _scan(pos: np.ndarray, index: _StreamIndex, candidates_desc: np.ndarray,
          stop_above: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FA/h, FRR) from the highest candidate down, stopping after the first FA/h > stop_above.

    The first candidate is above every score, so its FA/h is 0 and FRR is 1.
    """
    if index.min_gap <= 1:
        fa = index.fa_per_hour_no_refractory(candidates_desc)
        over = np.flatnonzero(fa > stop_above)
        n = over[0] + 1 if over.size else fa.size
        ts, fa = candidates_desc[:n], fa[:n]
    else:
        # The refractory filter is sequential, so go one threshold at a time from the top: high
        # thresholds have few crossings and are cheap, and the scan stops at the budget.
        fas = []
        for t in candidates_desc:
            fas.append(index.fa_per_hour(float(t)))
            if fas[-1] > stop_above:
                break
        ts, fa = candidates_desc[: len(fas)], np.asarray(fas, dtype=np.float64)
    frr = np.searchsorted(pos, ts, side="left") / pos.size
    return ts, fa, frr


@dataclass(frozen=True)
class OperatingPoint:
    """A detector threshold chosen for a false-accept budget."""

    target_fa_per_hour: float  # the budget asked for, false accepts per hour of negative audio
    threshold: float  # accept iff score >= threshold
    frr: float  # false reject rate of the positives at threshold, in [0, 1]
    fa_per_hour: float  # false accepts per hour measured at threshold (<= target)


def frr_at_fa_per_hour(pos_scores: ArrayLike, neg_streams: Sequence[ArrayLike], hop_s: float,
                       target_fa_per_hour: float, refractory_s: float = REFRACTORY_S) -> OperatingPoint:
    """Lowest-FRR operating point whose FA/h stays within the budget at and above its threshold.

    Candidate thresholds: every distinct positive score, every distinct local-peak value of the
    negative streams and the next float above it, and one threshold above every score (FRR 1, FA/h 0).
    Rising-crossing counts are not monotone in the threshold (lowering it can merge two excursions
    into one), so the chosen threshold is the smallest candidate ``t`` with FA/h(t') <= target for
    every candidate ``t' >= t`` (the conservative envelope), not merely one where FA/h(t) <= target.

    Args:
        pos_scores: (n_pos,) one score per positive clip (its maximum over frames).
        neg_streams: list of (frames_k,) per-frame negative score streams.
        hop_s: frame hop in seconds.
        target_fa_per_hour: budget, >= 0.
        refractory_s: seconds, as in ``detect_events``.
    """
    target = _check_positive(target_fa_per_hour, "target_fa_per_hour", allow_zero=True)
    pos, index, candidates = _prepare(pos_scores, neg_streams, hop_s, refractory_s)
    ts, fa, frr = _scan(pos, index, candidates, stop_above=target)
    i = ts.size - 1 if fa[-1] <= target else ts.size - 2  # fa[0] == 0, so i >= 0
    point = OperatingPoint(target_fa_per_hour=target, threshold=float(ts[i]), frr=float(frr[i]),
                           fa_per_hour=float(fa[i]))
    logger.debug("FRR@%.3g FA/h: threshold %.6g, FRR %.4f, FA/h %.4g (%d candidates scanned of %d)",
                 target, point.threshold, point.frr, point.fa_per_hour, ts.size, candidates.size)
    return point


TAIL_PEAKS = 20  # false-accept peaks the tail fit of ``tail_threshold`` uses
TAIL_MIN_EVENTS = 3.0  # below this many expected false accepts on the stream, the target is extrapolated


@dataclass(frozen=True)
class TailFit:
    """A threshold for a false-accept rate lower than a short stream can show, from its highest peaks."""

    threshold: float  # score at which the fitted tail gives target_fa_per_hour
    target_fa_per_hour: float
    peaks: int  # false-accept events the fit used (the highest ones)
    base_threshold: float  # the lowest of them (the tail's origin)
    base_fa_per_hour: float  # the stream's FA/h at base_threshold
    scale: float  # mean excess logit over the base (the exponential tail's scale)


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-12, 1 - 1e-12)
    return np.log(x) - np.log1p(-x)


def tail_threshold(neg_streams: Sequence[ArrayLike], hop_s: float, target_fa_per_hour: float,
                   refractory_s: float = REFRACTORY_S, peaks: int = TAIL_PEAKS, min_peaks: int = 5
                   ) -> TailFit | None:
    """Threshold at a false-accept rate below what the streams can measure (peaks over threshold).

    A 0.2 h validation stream cannot tell 0.5 FA/h from 4 (one false accept is 5 FA/h), so "the lowest threshold
    within 0.5 FA/h on it" is merely "above its highest peak", which real streams exceed several-fold. Here the
    ``peaks`` highest false-accept events (with the refractory window, as counted by ``false_accepts_per_hour``)
    fit an exponential tail on the logit scale: above the lowest of them, u, FA/h(t) = FA/h(u) exp(-(t - u) / m),
    m the mean excess of the others over u (the maximum-likelihood scale), solved for the target.

    Scores must be probabilities in [0, 1]. None when the streams hold fewer than ``min_peaks`` events, or when
    the target is not below FA/h(u) (measure it directly then: ``frr_at_fa_per_hour``).
    """
    target = _check_positive(target_fa_per_hour, "target_fa_per_hour")
    streams = _as_streams(neg_streams)
    index = _StreamIndex(streams, _check_positive(hop_s, "hop_s"),
                         _check_positive(refractory_s, "refractory_s", allow_zero=True))
    cands = np.unique(index.peaks)[::-1]
    top = np.array([float(cands[0]) + 1.0])
    ts, fa, _ = _scan(top, index, cands, stop_above=(peaks + 0.5) / index.hours)
    counts = np.maximum.accumulate(np.rint(fa * index.hours).astype(int))  # events at or above each threshold
    firsts = np.searchsorted(counts, np.arange(1, peaks + 1), side="left")  # first threshold with >= c events
    firsts = firsts[firsts < counts.size]
    if firsts.size < min_peaks:
        return None
    z = _logit(ts[firsts])  # the event peaks, highest first
    u, n = float(z[-1]), int(counts[firsts[-1]])
    base_rate = n / index.hours
    if target >= base_rate:
        return None
    scale = max(float(np.mean(z[:-1] - u)), 1e-6)
    t = u + scale * np.log(base_rate / target)
    return TailFit(threshold=float(1.0 / (1.0 + np.exp(-t))), target_fa_per_hour=target, peaks=int(firsts.size),
                   base_threshold=float(ts[firsts[-1]]), base_fa_per_hour=float(base_rate), scale=scale)


def fa_frr_curve(pos_scores: ArrayLike, neg_streams: Sequence[ArrayLike], hop_s: float,
                 refractory_s: float = REFRACTORY_S, max_fa_per_hour: float | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FA/h and FRR at every candidate threshold (the set of ``frr_at_fa_per_hour``), for DET plots.

    FA/h is the value measured at each threshold, not the envelope; take
    ``np.maximum.accumulate(fa[::-1])[::-1]`` for the conservative envelope.

    Args:
        max_fa_per_hour: if given (> 0), candidates are scanned from the top down and the scan stops
            after the first threshold whose FA/h exceeds it (that point is kept, so the curve spans the
            whole [0, max_fa_per_hour] range). With a refractory window each threshold costs
            O(its crossings), so without a cut, streams with ~10^5 distinct peaks take minutes.

    Returns:
        thresholds: (m,) ascending.
        fa_per_hour: (m,) false accepts per hour at each threshold.
        frr: (m,) false reject rate at each threshold (non-decreasing as thresholds ascend).
    """
    stop = math.inf
    if max_fa_per_hour is not None:
        stop = _check_positive(max_fa_per_hour, "max_fa_per_hour")
    pos, index, candidates = _prepare(pos_scores, neg_streams, hop_s, refractory_s)
    ts, fa, frr = _scan(pos, index, candidates, stop_above=stop)
    return ts[::-1].copy(), fa[::-1].copy(), frr[::-1].copy()


def area_under_frr_curve(pos_scores: ArrayLike, neg_streams: Sequence[ArrayLike], hop_s: float,
                         max_fa_per_hour: float = 1.0, refractory_s: float = REFRACTORY_S) -> float:
    """Mean FRR over FA/h budgets in [0, max_fa_per_hour]; in [0, 1], lower is better.

    The integrand is ``frr_at_fa_per_hour(..., target).frr`` as a function of the target: a
    non-increasing step function (the conservative envelope), integrated exactly.
    """
    max_fa = _check_positive(max_fa_per_hour, "max_fa_per_hour")
    pos, index, candidates = _prepare(pos_scores, neg_streams, hop_s, refractory_s)
    _, fa, frr = _scan(pos, index, candidates, stop_above=max_fa)
    envelope = np.maximum.accumulate(fa)
    m = int(np.count_nonzero(envelope <= max_fa))  # a prefix: the envelope is non-decreasing
    # For a budget x in [envelope[k], envelope[k+1]) the chosen point is candidate k.
    widths = np.diff(np.r_[envelope[:m], max_fa])
    return float(np.sum(frr[:m] * widths) / max_fa)


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


def _new_axes() -> tuple[Figure, Axes]:
    # Figure + Agg canvas directly: no pyplot global state, no backend switch for the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, path: str | os.PathLike) -> None:
    out = os.fspath(path)
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    logger.info("wrote %s", out)


def plot_det(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike,
             title: str = "") -> None:
    """DET-style PNG: FRR (y) against false accepts per hour (x, symlog so 0 FA/h is shown).

    Args:
        curves: name -> (fa_per_hour (m,), frr (m,)), e.g. the last two outputs of ``fa_frr_curve``.
        path: PNG file to write; parent folders are created.
        title: figure title.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    checked = {}
    for name, pair in curves.items():
        if len(pair) != 2:
            raise ValueError(f"curve '{name}' must be (fa_per_hour, frr)")
        fa = _as_scores(pair[0], f"{name}: fa_per_hour")
        frr = _as_scores(pair[1], f"{name}: frr")
        if fa.shape != frr.shape:
            raise ValueError(f"curve '{name}': fa_per_hour and frr differ in length: {fa.size} vs {frr.size}")
        order = np.argsort(fa, kind="stable")
        checked[name] = (fa[order], frr[order])
    fig, ax = _new_axes()
    x_max = max(DET_MARKS_FA_PER_HOUR)
    for name, (fa, frr) in checked.items():
        ax.plot(fa, frr, drawstyle="steps-post", label=name)
        x_max = max(x_max, float(fa.max()))
    for mark in DET_MARKS_FA_PER_HOUR:
        ax.axvline(mark, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlim(0, x_max * 1.1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("false reject rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    _save(fig, path)


def plot_roc(labels_scores: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | os.PathLike,
             max_fpr: float | None = None, title: str = "") -> None:
    """ROC PNG, one curve per entry, legend with AUC (or normalised pAUC when ``max_fpr`` is given).

    Args:
        labels_scores: name -> (labels (n,), scores (n,)).
        path: PNG file to write; parent folders are created.
        max_fpr: if given, in (0, 1]: the x axis is cut at it and the legend shows pAUC over [0, max_fpr].
        title: figure title.
    """
    if not labels_scores:
        raise ValueError("labels_scores is empty: nothing to plot")
    mf = 1.0 if max_fpr is None else float(max_fpr)
    if not (0.0 < mf <= 1.0):
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr!r}")
    fig, ax = _new_axes()
    for name, (labels, scores) in labels_scores.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        area = pauc(labels, scores, max_fpr=mf).normalised
        what = "AUC" if mf == 1.0 else f"pAUC@{mf:g}"
        ax.plot(fpr, tpr, label=f"{name} ({what} {area:.4f})")
    ax.plot([0, mf], [0, mf], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, mf)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    _save(fig, path)
