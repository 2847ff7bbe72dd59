"""Population-based training inside a sequential multi-objective study.

Every ``interval``-th trial is a PBT child: a parent is drawn from the top of the current Pareto
ranking (non-dominated rank, then crowding distance), the child inherits the parent's weights
(``init_from``) and hyperparameters, then explores: each non-architecture parameter is resampled with
probability ``resample_prob``, else multiplied by 0.8 or 1.2 with probability ``perturb_prob``. The
child is enqueued (``study.enqueue_trial``) with its lineage in user attributes; randomness is seeded by
(study seed, trial count), so a resumed study makes the same choices.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from wakeword.hpo.space import Param, perturb, resample


@dataclass(frozen=True)
class PBTConfig:
    enabled: bool = True  # fork children from the Pareto front
    interval: int = 3  # every interval-th trial is a child (after `warmup` finished trials)
    warmup: int = 4  # finished trials before the first child
    top_frac: float = 0.3  # parents come from this top share of the ranking (at least one trial)
    perturb_prob: float = 0.8  # chance that a parameter is scaled by one of `factors`
    resample_prob: float = 0.2  # chance that a parameter is drawn afresh instead
    factors: tuple[float, float] = (0.8, 1.2)  # explore multipliers
    budget_frac: float = 0.5  # a child trains for this share of a fresh trial's steps

    # (low, high, low included); checked with the types on load: wakeword.validation
    LIMITS: ClassVar[dict[str, tuple]] = {"interval": (1, None, True), "warmup": (0, None, True),
                                          "top_frac": (0, 1, False), "perturb_prob": (0, 1, True),
                                          "resample_prob": (0, 1, True), "budget_frac": (0, 1, False)}

    @classmethod
    def from_dict(cls, d: dict) -> PBTConfig:
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown pbt keys: {sorted(set(d) - known)}; known: {sorted(known)}")
        from wakeword.validation import ConfigError, check_config, yaml_numbers

        d = yaml_numbers(cls, d)
        problems = check_config(cls, d, "hpo.pbt")
        if problems:
            raise ConfigError("pbt config", problems)
        d = dict(d)
        if "factors" in d:
            d["factors"] = tuple(d["factors"])
        return cls(**d)


def non_dominated_rank(values: np.ndarray, maximize: tuple[bool, ...]) -> np.ndarray:
    """Pareto rank per row (0 = on the front). values: (n, n_objectives)."""
    v = np.where(np.array(maximize)[None, :], -values, values)  # minimise everything
    n = len(v)
    rank = np.full(n, -1)
    remaining = set(range(n))
    r = 0
    while remaining:
        idx = sorted(remaining)
        front = [i for i in idx if not any(np.all(v[j] <= v[i]) and np.any(v[j] < v[i]) for j in idx if j != i)]
        for i in front:
            rank[i] = r
            remaining.discard(i)
        r += 1
    return rank


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one front (boundary points get +inf). values: (n, m)."""
    n, m = values.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(values[:, k], kind="stable")
        span = values[order[-1], k] - values[order[0], k]
        d[order[0]] = d[order[-1]] = np.inf
        if span == 0:
            continue
        for a in range(1, n - 1):
            d[order[a]] += (values[order[a + 1], k] - values[order[a - 1], k]) / span
    return d


def ranking(values: np.ndarray, maximize: tuple[bool, ...]) -> np.ndarray:
    """Row indices best first: by Pareto rank, then by crowding distance (larger first) in a front."""
    rank = non_dominated_rank(values, maximize)
    crowd = np.zeros(len(values))
    for r in np.unique(rank):
        members = np.where(rank == r)[0]
        crowd[members] = crowding_distance(values[members])
    return np.array(sorted(range(len(values)), key=lambda i: (rank[i], -crowd[i], i)))


def pick_parent(values: np.ndarray, maximize: tuple[bool, ...], top_frac: float, rng: np.random.Generator) -> int:
    """Index of a parent drawn uniformly from the top ``top_frac`` of the ranking."""
    order = ranking(values, maximize)
    k = max(1, int(np.ceil(top_frac * len(order))))
    return int(order[int(rng.integers(k))])


def explore(params: dict, space: list[Param], cfg: PBTConfig, rng: np.random.Generator) -> tuple[dict, dict]:
    """Child parameters and what changed ({name: [old, new, how]}). Architecture stays the parent's
    (the child inherits its weights)."""
    child, mutations = dict(params), {}
    for p in space:
        if p.architecture or p.name not in params:
            continue
        u = rng.random()
        old = params[p.name]
        if u < cfg.resample_prob:
            new, how = resample(p, rng), "resample"
        elif u < cfg.resample_prob + cfg.perturb_prob and p.kind != "categorical":
            f = cfg.factors[int(rng.integers(2))]
            new, how = perturb(old, p, f), f"x{f:g}"
        else:
            continue
        if new != old:
            child[p.name] = new
            mutations[p.name] = [old, new, how]
    return child, mutations


def hypervolume_2d(points: np.ndarray, ref: tuple[float, float], maximize: tuple[bool, bool]) -> float:
    """Area dominated by ``points`` (n, 2) and bounded by ``ref``, for two objectives."""
    p = np.where(np.array(maximize)[None, :], -points, points).astype(float)
    r = np.where(np.array(maximize), -np.array(ref, float), np.array(ref, float))
    p = p[np.all(p < r, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[np.argsort(p[:, 0])]
    area, best_y = 0.0, r[1]
    for x, y in p:
        if y < best_y:
            area += (r[0] - x) * (best_y - y)
            best_y = y
    return float(area)
