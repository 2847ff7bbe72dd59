"""Metrics agree with scikit-learn, with hand-computed cases and with brute force over all thresholds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from wakeword.evaluation.metrics import (
    PAUC,
    OperatingPoint,
    area_under_frr_curve,
    detect_events,
    eer,
    fa_frr_curve,
    false_accepts_per_hour,
    frr_at_fa_per_hour,
    pauc,
    plot_det,
    plot_roc,
    roc_curve,
)


def _binary_data(seed: int, n: int = 300, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + 0.8 * labels
    if ties:
        scores = np.round(scores, 1)  # many tied scores, across classes too
    return labels, scores


def _smooth_streams(rng: np.random.Generator, lengths: list[int], decimals: int | None = 2) -> list[np.ndarray]:
    """Per-frame scores with bumps and plateaus, like a smoothed detector output."""
    out = []
    for n in lengths:
        x = np.convolve(rng.normal(size=n + 4), np.ones(5) / 5, mode="valid")[:n]
        x = 1 / (1 + np.exp(-2 * x))
        out.append(np.round(x, decimals) if decimals is not None else x)
    return out


# ---------------------------------------------------------------------------------------------- ROC


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [True, False])
def test_roc_curve_equals_sklearn(seed: int, ties: bool) -> None:
    labels, scores = _binary_data(seed, ties=ties)
    fpr, tpr, thr = roc_curve(labels, scores)
    s_fpr, s_tpr, s_thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, s_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, s_tpr, atol=1e-12)
    np.testing.assert_array_equal(thr, s_thr)
    assert thr[0] == np.inf and fpr[0] == 0 and tpr[0] == 0
    assert thr.size == np.unique(scores).size + 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("max_fpr", [0.01, 0.05, 0.1, 0.3, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("ties", [True, False])
def test_pauc_mcclish_equals_sklearn(seed: int, max_fpr: float, ties: bool) -> None:
    labels, scores = _binary_data(seed, ties=ties)
    p = pauc(labels, scores, max_fpr=max_fpr)
    assert isinstance(p, PAUC) and p.max_fpr == max_fpr
    assert p.mcclish == pytest.approx(skm.roc_auc_score(labels, scores, max_fpr=max_fpr), abs=1e-9)
    assert 0.0 <= p.normalised <= 1.0


def test_pauc_mcclish_at_exact_roc_vertex() -> None:
    # max_fpr lands exactly on an FPR value shared by a vertical segment of the ROC.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.9, 0.8, 0.4, 0.3, 0.5, 0.5])
    for max_fpr in (0.2, 0.4, 0.6):
        assert pauc(labels, scores, max_fpr).mcclish == pytest.approx(
            skm.roc_auc_score(labels, scores, max_fpr=max_fpr), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 5])
def test_pauc_at_one_is_auc(seed: int) -> None:
    labels, scores = _binary_data(seed)
    p = pauc(labels, scores, max_fpr=1.0)
    auc = skm.roc_auc_score(labels, scores)
    assert p.normalised == pytest.approx(auc, abs=1e-12)
    assert p.mcclish == pytest.approx(auc, abs=1e-12)


def test_pauc_hand_values() -> None:
    labels = np.array([0, 0, 1, 1])
    perfect = pauc(labels, np.array([0.1, 0.2, 0.8, 0.9]), max_fpr=0.1)
    assert perfect.normalised == pytest.approx(1.0) and perfect.mcclish == pytest.approx(1.0)
    # ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1): over FPR [0, .5] the area is .25.
    p = pauc(labels, np.array([0.1, 0.4, 0.35, 0.8]), max_fpr=0.5)
    assert p.normalised == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- EER


def test_eer_exact_vertex() -> None:
    # ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FPR = FNR = .5 at threshold .4.
    rate, thr = eer([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert rate == pytest.approx(0.5) and thr == pytest.approx(0.4)


def test_eer_interpolated() -> None:
    # Scores 5..1 with labels 1,0,0,0,1: FNR stays .5 while FPR goes 1/3 -> 2/3 between thresholds 4 and 3.
    rate, thr = eer([1, 0, 0, 0, 1], [5, 4, 3, 2, 1])
    assert rate == pytest.approx(0.5) and thr == pytest.approx(3.5)


def test_eer_perfect_separation() -> None:
    rate, thr = eer([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9])
    assert rate == 0.0 and 0.2 < thr <= 0.7


@pytest.mark.parametrize("seed", [0, 1])
def test_eer_rates_balance(seed: int) -> None:
    labels, scores = _binary_data(seed, n=2000, ties=False)
    rate, thr = eer(labels, scores)
    fpr = np.mean(scores[labels == 0] >= thr)
    fnr = np.mean(scores[labels == 1] < thr)
    assert abs(fpr - rate) < 0.01 and abs(fnr - rate) < 0.01


# ---------------------------------------------------------------------------------------------- events


def test_detect_events_rising_crossings() -> None:
    s = np.array([0.0, 0.6, 0.7, 0.2, 0.9, 0.1, 0.0, 0.8])
    np.testing.assert_allclose(detect_events(s, 0.5, hop_s=0.5, refractory_s=0.0), [0.5, 2.0, 3.5])


def test_detect_events_first_frame_and_equal_threshold() -> None:
    s = np.array([0.5, 0.5, 0.4, 0.5, 0.49999])
    # Frame 0 counts as a rising crossing; a value equal to the threshold is "above".
    np.testing.assert_allclose(detect_events(s, 0.5, hop_s=1.0, refractory_s=0.0), [0.0, 3.0])
    assert detect_events(s, np.nextafter(0.5, 1.0), hop_s=1.0, refractory_s=0.0).size == 0


def test_detect_events_refractory() -> None:
    s = np.zeros(12)
    s[[0, 2, 4, 7, 9, 11]] = 1.0  # crossings at frames 0,2,4,7,9,11
    # hop 0.1 s, refractory 0.3 s: accept 0; 2 is 0.2 s after -> ignored; 4 is 0.4 s -> accepted;
    # 7 is 0.3 s after 4 (exactly the window) -> accepted; 9 ignored; 11 is 0.4 s after 7 -> accepted.
    np.testing.assert_allclose(detect_events(s, 0.5, hop_s=0.1, refractory_s=0.3), [0.0, 0.4, 0.7, 1.1])
    # The window is measured from the last *accepted* event, not the last crossing.
    s2 = np.zeros(8)
    s2[[0, 2, 4, 6]] = 1.0
    np.testing.assert_allclose(detect_events(s2, 0.5, hop_s=1.0, refractory_s=3.0), [0.0, 4.0])
    np.testing.assert_allclose(detect_events(s2, 0.5, hop_s=1.0, refractory_s=0.0), [0.0, 2.0, 4.0, 6.0])


def test_detect_events_none() -> None:
    assert detect_events(np.full(5, 0.2), 0.5, hop_s=0.01).size == 0


def test_false_accepts_per_hour_hand() -> None:
    a = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])  # crossings at 1, 3 (hop 1 s): 2 events without refractory
    b = np.array([1.0, 1.0, 0.0, 0.0])  # one event at frame 0; refractory does not carry over from a
    hours = 10 * 1.0 / 3600
    assert false_accepts_per_hour([a, b], 0.5, hop_s=1.0, refractory_s=0.0) == pytest.approx(3 / hours)
    assert false_accepts_per_hour([a, b], 0.5, hop_s=1.0, refractory_s=5.0) == pytest.approx(2 / hours)
    assert false_accepts_per_hour([a, b], 2.0, hop_s=1.0) == 0.0


# ---------------------------------------------------------------------------------------------- FRR @ FA/h


def test_frr_at_fa_per_hour_hand() -> None:
    hop = 1.0
    # 3600 frames = 1 hour; peaks 0.9 (once), 0.7 (twice, far apart), 0.5 (once).
    neg = np.zeros(3600)
    neg[100], neg[1000], neg[2000], neg[3000] = 0.9, 0.7, 0.7, 0.5
    pos = np.array([0.95, 0.8, 0.75, 0.6, 0.3])
    op = frr_at_fa_per_hour(pos, [neg], hop, target_fa_per_hour=0.0)
    assert isinstance(op, OperatingPoint)
    # Smallest threshold with no event: just above 0.9; positives accepted: 0.95 only.
    assert op.threshold == np.nextafter(0.9, np.inf) and op.frr == pytest.approx(0.8) and op.fa_per_hour == 0
    op = frr_at_fa_per_hour(pos, [neg], hop, target_fa_per_hour=1.0)
    # 1 FA/h allows the 0.9 peak but not the two 0.7 peaks: just above 0.7; 0.6 and 0.3 rejected.
    assert op.threshold == np.nextafter(0.7, np.inf) and op.frr == pytest.approx(0.4)
    assert op.fa_per_hour == pytest.approx(1.0)
    op = frr_at_fa_per_hour(pos, [neg], hop, target_fa_per_hour=3.0)
    assert op.threshold == np.nextafter(0.5, np.inf) and op.frr == pytest.approx(0.2)
    op = frr_at_fa_per_hour(pos, [neg], hop, target_fa_per_hour=4.0)
    # 4 FA/h admits every candidate: at 0.0 the whole stream is one excursion from frame 0 (1 FA/h).
    assert op.threshold == 0.0 and op.frr == 0.0 and op.fa_per_hour == pytest.approx(1.0)
    assert op.target_fa_per_hour == 4.0


def test_frr_at_fa_per_hour_uses_envelope() -> None:
    # At threshold 0.5 there are two crossings (two bumps); at 0.3 the bumps merge into one excursion.
    # FA/h is lower at 0.3 than at 0.5, but 0.5 breaks the budget, so 0.3 must not be chosen.
    neg = np.zeros(3600)
    neg[10:15] = [0.6, 0.4, 0.6, 0.0, 0.0]
    pos = np.array([0.3, 0.35, 0.55])
    assert false_accepts_per_hour([neg], 0.5, 1.0, refractory_s=0.0) == pytest.approx(2.0)
    assert false_accepts_per_hour([neg], 0.3, 1.0, refractory_s=0.0) == pytest.approx(1.0)
    op = frr_at_fa_per_hour(pos, [neg], 1.0, target_fa_per_hour=1.0, refractory_s=0.0)
    assert op.threshold == np.nextafter(0.6, np.inf) and op.frr == pytest.approx(1.0)


def _brute_candidates(pos: np.ndarray, streams: list[np.ndarray]) -> np.ndarray:
    peaks = []
    for s in streams:
        for i in range(s.size):
            left = s[i - 1] if i > 0 else -np.inf
            right = s[i + 1] if i + 1 < s.size else -np.inf
            if s[i] > left and s[i] >= right:
                peaks.append(s[i])
    peaks = np.asarray(peaks)
    top = max(pos.max(), max(s.max() for s in streams))
    return np.unique(np.concatenate([pos, peaks, np.nextafter(peaks, np.inf), [top + 1.0]]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("refractory_s", [0.0, 0.5, 2.0])
def test_frr_at_fa_per_hour_matches_brute_force(seed: int, refractory_s: float) -> None:
    rng = np.random.default_rng(seed)
    hop = 0.5
    streams = _smooth_streams(rng, [400, 250, 300])
    pos = np.round(rng.uniform(0.4, 1.0, size=60), 2)
    cands = _brute_candidates(pos, streams)
    fa = np.array([false_accepts_per_hour(streams, t, hop, refractory_s) for t in cands])
    frr = np.array([np.mean(pos < t) for t in cands])
    # The full curve uses exactly this candidate set and these values.
    c_thr, c_fa, c_frr = fa_frr_curve(pos, streams, hop, refractory_s=refractory_s)
    np.testing.assert_array_equal(c_thr, cands)
    np.testing.assert_allclose(c_fa, fa)
    np.testing.assert_allclose(c_frr, frr)
    envelope = np.maximum.accumulate(fa[::-1])[::-1]  # max FA/h over all thresholds >= t
    one_event = 1 / (sum(s.size for s in streams) * hop / 3600)
    for target in [0.0, one_event, 2.5 * one_event, 10 * one_event, 50 * one_event, 1e9]:
        op = frr_at_fa_per_hour(pos, streams, hop, target, refractory_s=refractory_s)
        k = int(np.flatnonzero(envelope <= target)[0])
        assert op.threshold == cands[k]
        assert op.frr == pytest.approx(frr[k]) and op.fa_per_hour == pytest.approx(fa[k])
        assert op.fa_per_hour <= target


def test_fa_frr_curve_cut() -> None:
    rng = np.random.default_rng(3)
    hop = 0.5
    streams = _smooth_streams(rng, [500, 500])
    pos = rng.uniform(0.4, 1.0, size=40)
    full = fa_frr_curve(pos, streams, hop)
    one_event = 1 / (1000 * hop / 3600)
    thr, fa, frr = fa_frr_curve(pos, streams, hop, max_fa_per_hour=5 * one_event)
    assert np.all(np.diff(thr) > 0) and np.all(np.diff(frr) >= 0)
    # The cut keeps the top of the full curve, down to the first point beyond the budget.
    np.testing.assert_array_equal(thr, full[0][-thr.size:])
    np.testing.assert_allclose(fa, full[1][-thr.size:])
    assert fa[0] > 5 * one_event and np.all(fa[1:] <= 5 * one_event)


@pytest.mark.parametrize("seed", [0, 1])
def test_operating_point_monotone_in_target(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hop = 0.5
    streams = _smooth_streams(rng, [600, 600], decimals=None)
    pos = rng.uniform(0.3, 1.0, size=80)
    one_event = 1 / (1200 * hop / 3600)
    targets = np.linspace(0, 40 * one_event, 41)
    ops = [frr_at_fa_per_hour(pos, streams, hop, t, refractory_s=1.0) for t in targets]
    thr = np.array([o.threshold for o in ops])
    frr = np.array([o.frr for o in ops])
    assert np.all(np.diff(thr) <= 0) and np.all(np.diff(frr) <= 0)
    assert all(o.fa_per_hour <= o.target_fa_per_hour for o in ops)
    # Every threshold at or above a chosen one is within budget, per the reference FA/h.
    c_thr, c_fa, _ = fa_frr_curve(pos, streams, hop, refractory_s=1.0)
    for o in ops[::8]:
        assert np.all(c_fa[c_thr >= o.threshold] <= o.target_fa_per_hour)


def test_area_under_frr_curve() -> None:
    rng = np.random.default_rng(4)
    hop = 0.5
    streams = _smooth_streams(rng, [500, 400])
    pos = rng.uniform(0.4, 1.0, size=50)
    one_event = 1 / (900 * hop / 3600)
    max_fa = 7.3 * one_event
    area = area_under_frr_curve(pos, streams, hop, max_fa_per_hour=max_fa)
    # The chosen FRR only changes where the envelope FA/h does: integrate exactly by probing each step.
    _, fa, _ = fa_frr_curve(pos, streams, hop, max_fa_per_hour=max_fa)
    edges = np.unique(np.r_[np.clip(np.maximum.accumulate(fa[::-1]), 0, max_fa), max_fa])
    mids, widths = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
    exact = sum(frr_at_fa_per_hour(pos, streams, hop, x).frr * w for x, w in zip(mids, widths)) / max_fa
    assert area == pytest.approx(exact, abs=1e-12)
    assert 0.0 < area < 1.0
    assert 0.0 <= area <= 1.0
    # Perfect detector: positives above every negative, FRR 0 from FA/h 0.
    assert area_under_frr_curve(np.full(5, 2.0), streams, hop, max_fa_per_hour=1.0) == 0.0
    # Useless detector: every positive below every negative frame -> FRR 1 until FA/h is huge.
    assert area_under_frr_curve(np.full(5, -1.0), streams, hop, max_fa_per_hour=1.0) == 1.0


def test_large_streams_are_fast() -> None:
    rng = np.random.default_rng(0)
    streams = _smooth_streams(rng, [50_000] * 4, decimals=None)
    pos = rng.uniform(0.5, 1.0, size=2000)
    op = frr_at_fa_per_hour(pos, streams, 0.01, target_fa_per_hour=1.0)
    assert op.fa_per_hour <= 1.0
    assert math.isfinite(area_under_frr_curve(pos, streams, 0.01, max_fa_per_hour=1.0))


# ---------------------------------------------------------------------------------------------- plots


def test_plots_write_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    streams = _smooth_streams(rng, [600])
    pos = rng.uniform(0.4, 1.0, size=30)
    _, fa, frr = fa_frr_curve(pos, streams, 0.5)
    det = tmp_path / "sub" / "det.png"
    plot_det({"model": (fa, frr)}, det, title="DET")
    roc = tmp_path / "roc.png"
    plot_roc({"a": _binary_data(0), "b": _binary_data(1)}, roc, max_fpr=0.1)
    for p in (det, roc):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- errors


_GOOD_LABELS = np.array([0, 1, 0, 1])
_GOOD_SCORES = np.array([0.1, 0.9, 0.3, 0.6])


@pytest.mark.parametrize("fn", [roc_curve, pauc, eer])
@pytest.mark.parametrize("labels, scores", [
    ([], []),  # empty
    (None, _GOOD_SCORES),  # missing
    ([0, 0, 0], [0.1, 0.2, 0.3]),  # no positive
    ([1, 1], [0.1, 0.2]),  # no negative
    ([0, 1, 1], [0.1, 0.2]),  # length mismatch
    ([0, 1, 0, 1], [0.1, np.nan, 0.2, 0.3]),  # NaN score
    ([0, 1, 0, np.nan], [0.1, 0.2, 0.2, 0.3]),  # NaN label
    ([0, 2, 0, 1], [0.1, 0.2, 0.2, 0.3]),  # non-binary label
    (np.zeros((2, 2)), np.zeros((2, 2))),  # not 1-D
])
def test_clip_metrics_reject_bad_input(fn, labels, scores) -> None:
    with pytest.raises(ValueError):
        fn(labels, scores)


@pytest.mark.parametrize("max_fpr", [0.0, -0.1, 1.5, float("nan")])
def test_pauc_rejects_max_fpr(max_fpr: float) -> None:
    with pytest.raises(ValueError, match="max_fpr"):
        pauc(_GOOD_LABELS, _GOOD_SCORES, max_fpr=max_fpr)


@pytest.mark.parametrize("kwargs", [
    {"scores": []},
    {"scores": [0.1, np.nan]},
    {"threshold": float("nan")},
    {"hop_s": 0.0},
    {"hop_s": -0.01},
    {"refractory_s": -1.0},
])
def test_detect_events_rejects_bad_input(kwargs) -> None:
    args = {"scores": [0.1, 0.9], "threshold": 0.5, "hop_s": 0.01, "refractory_s": 1.0} | kwargs
    with pytest.raises(ValueError):
        detect_events(**args)


@pytest.mark.parametrize("streams", [[], None, [np.array([])], [np.array([0.1, np.nan])], np.array([0.1, 0.2])])
def test_stream_metrics_reject_bad_streams(streams) -> None:
    pos = np.array([0.5, 0.7])
    with pytest.raises(ValueError):
        false_accepts_per_hour(streams, 0.5, 0.01)
    with pytest.raises(ValueError):
        frr_at_fa_per_hour(pos, streams, 0.01, 1.0)
    with pytest.raises(ValueError):
        fa_frr_curve(pos, streams, 0.01)
    with pytest.raises(ValueError):
        area_under_frr_curve(pos, streams, 0.01)


def test_stream_metrics_reject_bad_positives_and_budgets() -> None:
    neg = [np.array([0.1, 0.6, 0.2])]
    for pos in ([], None, [0.5, np.nan]):
        with pytest.raises(ValueError):
            frr_at_fa_per_hour(pos, neg, 0.01, 1.0)
    with pytest.raises(ValueError):
        frr_at_fa_per_hour([0.5], neg, 0.01, -1.0)
    with pytest.raises(ValueError):
        frr_at_fa_per_hour([0.5], neg, 0.01, float("nan"))
    with pytest.raises(ValueError):
        area_under_frr_curve([0.5], neg, 0.01, max_fa_per_hour=0.0)
    with pytest.raises(ValueError):
        fa_frr_curve([0.5], neg, 0.01, max_fa_per_hour=-1.0)
    with pytest.raises(ValueError):
        frr_at_fa_per_hour([0.5], neg, 0.0, 1.0)


def test_plots_reject_empty(tmp_path) -> None:
    with pytest.raises(ValueError):
        plot_det({}, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plot_det({"a": (np.array([0.0, 1.0]), np.array([1.0]))}, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plot_roc({}, tmp_path / "y.png")


def test_tail_threshold_extrapolates_a_rate_a_short_stream_cannot_show() -> None:
    """0.2 h of stream cannot hold 0.5 FA/h (one false accept is 5 FA/h): "within 0.5 FA/h on it" is merely "above
    its highest peak". The tail fit on its 20 highest peaks lands near 0.5 FA/h on 20 h of the same kind of stream,
    where the measured threshold fires several times as often."""
    from wakeword.evaluation.metrics import TailFit, tail_threshold

    hop = 0.08
    fit_err, measured_err = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)

        def stream(hours: float, rng: np.random.Generator = rng) -> np.ndarray:
            return 1.0 / (1.0 + np.exp(-rng.logistic(-6.0, 1.0, int(hours * 3600 / hop))))

        long, short = [stream(20.0)], [stream(0.2)]
        fit = tail_threshold(short, hop, 0.5)
        assert isinstance(fit, TailFit) and fit.peaks == 20 and fit.threshold > fit.base_threshold
        assert fit.scale == pytest.approx(1.0, rel=0.5)  # the logistic tail's scale on the logit axis
        measured = frr_at_fa_per_hour([0.999], short, hop, 0.5).threshold
        fit_err.append(abs(np.log(false_accepts_per_hour(long, fit.threshold, hop) / 0.5)))
        measured_err.append(abs(np.log(max(false_accepts_per_hour(long, measured, hop), 1e-3) / 0.5)))
    assert max(fit_err) < np.log(5) and np.mean(fit_err) < 0.5 * np.mean(measured_err)
    # nothing to extrapolate: a rate the stream shows, or too few false accepts to fit
    assert tail_threshold(short, hop, 1000.0) is None
    assert tail_threshold([np.full(1000, 0.01)], hop, 0.5) is None
