"""The YAML configs the library ships: recipes (``demo``, ``demo_student``, ``demo_distilled``) and the
descriptions of the development evaluation sets (``eval/*.yaml``).

This package is their one source: the copies under the checkout's ``configs/`` (what the docs and the
experiment configs point at) are tested to be identical, and an installed wheel reads these files through
``importlib.resources``, so nothing depends on where the checkout is.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# `--config NAME` works for these without a path
RECIPES = ("demo", "full", "demo_student", "demo_distilled", "demo_micro", "demo_micro_distilled")
RECOMMENDED = "demo"  # the recipe `wakeword train` / `wakeword demo` use when given no config
EVAL_PRESETS = {"real-dev": "real_dev_computer"}  # `wakeword bench --preset NAME` (../shared/data/real)


def shipped(name: str) -> Path:
    """The path of a shipped config: ``"demo"``, ``"demo_student.yaml"``, ``"eval/real_dev_computer"``."""
    rel = name if name.endswith(".yaml") else f"{name}.yaml"
    p = Path(str(files(__name__).joinpath(rel)))
    if not p.is_file():
        raise FileNotFoundError(f"no shipped config '{name}'; recipes: {list(RECIPES)}")
    return p


def resolve(config: str | Path | None) -> Path:
    """A ``--config`` value: an existing file, else the name of a shipped recipe; None: the recommended one."""
    if config is None:
        return shipped(RECOMMENDED)
    p = Path(config)
    if p.is_file():
        return p
    stem = p.name.removesuffix(".yaml")
    if stem in RECIPES and (p.parent == Path(".") or p.parent.name == "configs"):
        return shipped(stem)  # `configs/demo.yaml` outside a checkout, or plain `demo_student`
    raise FileNotFoundError(f"config file not found: {p} (shipped recipes, usable by name: {list(RECIPES)})")


def eval_set_path(ref: str | Path, base: Path | None = None) -> Path:
    """An evaluation-set YAML named in a config: a path relative to the working directory, else to ``base``
    (the folder that holds the config's ``configs/``), else a shipped set of the same file name."""
    p = Path(ref)
    candidates = [p] if p.is_absolute() else [p, *([base / p] if base is not None else [])]
    for c in candidates:
        if c.is_file():
            return c
    try:
        return shipped(f"eval/{p.name}")
    except FileNotFoundError:
        raise FileNotFoundError(f"evaluation set not found: {ref}") from None


def eval_preset(name: str) -> Path:
    """The YAML of a named evaluation preset (``real-dev``): the checkout's copy when run from one (its root
    points at ../shared/data/real), else the shipped copy."""
    if name not in EVAL_PRESETS:
        raise ValueError(f"unknown preset '{name}'; known: {sorted(EVAL_PRESETS)}")
    return eval_set_path(Path("configs") / "eval" / f"{EVAL_PRESETS[name]}.yaml")


__all__ = ["EVAL_PRESETS", "RECIPES", "RECOMMENDED", "eval_preset", "eval_set_path", "resolve", "shipped"]
