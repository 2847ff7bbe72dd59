"""The search space: the only place that calls ``trial.suggest_*``.

A space maps dotted parameter names to distributions. The names say where a value goes in the trial's
configuration: ``train.<TrainConfig field>``, ``model.<StudentConfig field>``,
``augment.<AugmentConfig field>[.0|.1]`` (an end of a range), ``specaugment.<SpecAugmentConfig field>``,
``distill.<DistillConfig field>`` and ``distill.temperature`` (a named schedule, see TEMPERATURES).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from wakeword.dataset.augment import AugmentConfig
from wakeword.features.specaugment import SpecAugmentConfig
from wakeword.models.mobilenetv3 import StudentConfig

# Named temperature schedules (categorical choices must be plain values in Optuna).
TEMPERATURES: dict[str, dict] = {
    "constant2": {"policy": "constant", "t": 2.0},
    "constant4": {"policy": "constant", "t": 4.0},
    "cosine4to1": {"policy": "cosine", "start": 4.0, "end": 1.0},
    "linear4to1": {"policy": "linear", "start": 4.0, "end": 1.0},
    "adaptive1to4": {"policy": "adaptive", "min": 1.0, "max": 4.0, "signal": "agreement"},
}

_TRAIN_KEYS = {"lr", "weight_decay", "batch_size", "positive_fraction", "adversarial_fraction", "warmup_frac"}
_DISTILL_KEYS = {"kd_weight", "feature_weight", "weighting", "feature_loss", "temperature"}


@dataclass(frozen=True)
class Param:
    name: str  # dotted path, e.g. "train.lr", "model.width", "augment.snr_db.0"
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample on a log scale (learning rates, decays)
    step: float | None = None  # grid step (int and float)
    choices: tuple = ()

    @property
    def architecture(self) -> bool:
        """Changes the network: a PBT child that inherits weights keeps its parent's value."""
        return self.name.startswith("model.")

    @property
    def needs_teachers(self) -> bool:
        return self.name.startswith("distill.")

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter (checked when the space is built)."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name}: a {self.kind} parameter needs low and high")
        return self.low, self.high


# The default space: the student's shape, optimisation, augmentation strength; distillation weights and
# the temperature schedule join when teachers are configured.
DEFAULT_SPACE: dict[str, dict] = {
    "model.width": {"kind": "float", "low": 0.5, "high": 1.5, "step": 0.25},
    "model.depth": {"kind": "float", "low": 0.5, "high": 1.5, "step": 0.5},
    "model.kernel": {"kind": "categorical", "choices": [None, 3, 5]},  # None: per-stage default (3,3,5,5)
    "model.se": {"kind": "categorical", "choices": [True, False]},
    "train.lr": {"kind": "float", "low": 5e-4, "high": 1e-2, "log": True},
    "train.weight_decay": {"kind": "float", "low": 1e-4, "high": 0.1, "log": True},
    "train.batch_size": {"kind": "categorical", "choices": [32, 64, 128]},
    "augment.snr_db.0": {"kind": "float", "low": -5.0, "high": 10.0},
    "augment.snr_db.1": {"kind": "float", "low": 15.0, "high": 35.0},
    "specaugment.time_mask_frac": {"kind": "float", "low": 0.0, "high": 0.15},
    "specaugment.freq_mask_frac": {"kind": "float", "low": 0.0, "high": 0.2},
    "distill.kd_weight": {"kind": "float", "low": 0.1, "high": 2.0, "log": True},
    "distill.feature_weight": {"kind": "float", "low": 0.0, "high": 1.0},
    "distill.temperature": {"kind": "categorical", "choices": list(TEMPERATURES)},
}


def _known(name: str) -> bool:
    parts = name.split(".")
    section, rest = parts[0], parts[1:]
    if not rest:
        return False
    if section == "train":
        return len(rest) == 1 and rest[0] in _TRAIN_KEYS
    if section == "model":
        return len(rest) == 1 and rest[0] in {f.name for f in fields(StudentConfig)} - {"n_mels", "stages"}
    if section == "specaugment":
        return len(rest) == 1 and rest[0] in {f.name for f in fields(SpecAugmentConfig)}
    if section == "augment":
        names = {f.name: f for f in fields(AugmentConfig)}
        if rest[0] not in names:
            return False
        is_range = "tuple" in str(names[rest[0]].type)
        return (len(rest) == 2 and rest[1] in ("0", "1")) if is_range else len(rest) == 1
    if section == "distill":
        return len(rest) == 1 and rest[0] in _DISTILL_KEYS
    return False


def parse_space(spec: dict[str, dict], with_teachers: bool) -> list[Param]:
    """Validate a space (name -> {kind, low, high, log, step, choices}); distillation parameters are
    dropped when no teachers are configured."""
    if not spec:
        raise ValueError("the search space is empty: give at least one parameter")
    params = []
    for name, d in spec.items():
        if not _known(name):
            raise ValueError(f"unknown search parameter '{name}'; examples of known ones: "
                             f"{sorted(DEFAULT_SPACE)}")
        d = dict(d)
        kind = d.pop("kind", None)
        if kind not in ("float", "int", "categorical"):
            raise ValueError(f"parameter '{name}': kind must be float, int or categorical, not {kind!r}")
        bad = set(d) - {"low", "high", "log", "step", "choices"}
        if bad:
            raise ValueError(f"parameter '{name}': unknown keys {sorted(bad)}")
        if "choices" in d:
            d["choices"] = tuple(d["choices"])
        p = Param(name, kind, **d)
        if kind == "categorical" and not p.choices:
            raise ValueError(f"parameter '{name}': categorical needs choices")
        if kind != "categorical" and (p.low is None or p.high is None or p.low > p.high):
            raise ValueError(f"parameter '{name}': needs low <= high")
        if p.log and (p.low is None or p.low <= 0):
            raise ValueError(f"parameter '{name}': a log scale needs low > 0")
        if name == "distill.temperature" and set(p.choices) - set(TEMPERATURES):
            raise ValueError(f"distill.temperature choices must be among {sorted(TEMPERATURES)}")
        if p.needs_teachers and not with_teachers:
            continue
        params.append(p)
    if not params:
        raise ValueError("the search space is empty once distillation parameters are dropped (no teachers)")
    return params


def suggest(trial, space: list[Param]) -> dict:
    """Draw (or, for an enqueued trial, read back) every parameter of ``space``."""
    out = {}
    for p in space:
        if p.kind == "float":
            out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
        elif p.kind == "int":
            low, high = p.bounds()
            out[p.name] = trial.suggest_int(p.name, int(low), int(high), log=p.log, step=int(p.step or 1))
        else:
            out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return out


def apply(params: dict, train: dict, distill: dict | None) -> tuple[dict, dict | None]:
    """Write parameter values into copies of the base train and distill configs (plain dicts)."""
    train = {k: (dict(v) if isinstance(v, dict) else v) for k, v in train.items()}
    distill = dict(distill) if distill is not None else None
    for name, value in params.items():
        section, key, *idx = name.split(".")
        if section == "train":
            train[key] = value
        elif section in ("model", "specaugment"):
            train.setdefault(section, {})[key] = value
        elif section == "augment":
            aug = train.setdefault("augment", {})
            if idx:
                cur = list(aug.get(key, getattr(AugmentConfig(), key)))
                cur[int(idx[0])] = value
                aug[key] = cur
            else:
                aug[key] = value
        elif section == "distill" and distill is not None:
            distill[key] = TEMPERATURES[value] if key == "temperature" else value
    for key in ("snr_db",):  # a range drawn end by end can come out reversed: keep it ordered
        if key in train.get("augment", {}):
            train["augment"][key] = sorted(train["augment"][key])
    return train, distill


def default_params(space: list[Param], train: dict, distill: dict | None) -> dict | None:
    """The values the base configuration would use for every parameter of ``space`` (the "default
    configuration" trial), or None when one of them lies outside the space."""
    from wakeword.training.distill import DistillConfig
    from wakeword.training.fit import TrainConfig

    tc = TrainConfig.from_dict(train)
    sections = {"model": StudentConfig.from_dict(tc.model), "augment": AugmentConfig.from_dict(tc.augment),
                "specaugment": SpecAugmentConfig(**tc.specaugment)}
    out = {}
    for p in space:
        section, key, *idx = p.name.split(".")
        if section == "train":
            v = getattr(tc, key)
        elif section == "distill":
            dc = DistillConfig.from_dict(distill or {})
            v = getattr(dc, key)
            if key == "temperature":
                v = next((k for k, t in TEMPERATURES.items() if t == v), None)
        else:
            v = getattr(sections[section], key)
            if idx:
                v = v[int(idx[0])]
        if p.kind == "categorical":
            if v not in p.choices:
                return None
        elif not (p.low <= v <= p.high):
            return None
        out[p.name] = v
    return out


def perturb(value, p: Param, factor: float):
    """PBT explore step for one value: scale numbers (clipped to the range, snapped to the grid);
    categoricals move to a neighbouring choice."""
    if p.kind == "categorical":
        return value
    v = value * factor
    v = min(p.high, max(p.low, v))
    if p.step:
        v = p.low + round((v - p.low) / p.step) * p.step
        v = min(p.high, max(p.low, v))
    if p.kind == "int":
        v = int(round(v))
    return float(v) if p.kind == "float" else v


def resample(p: Param, rng) -> object:
    """PBT explore step: a fresh draw from the parameter's distribution (rng: numpy Generator)."""
    if p.kind == "categorical":
        return p.choices[int(rng.integers(len(p.choices)))]
    low, high = p.bounds()
    v = math.exp(rng.uniform(math.log(low), math.log(high))) if p.log else rng.uniform(low, high)
    return perturb(v, p, 1.0)
