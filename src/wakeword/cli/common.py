"""What the command modules share: YAML sections, override helpers and the parent parsers."""
from __future__ import annotations

import argparse
from pathlib import Path

from wakeword.defaults import MAX_FPR, REFRACTORY_S


def load_yaml(path: str | None, section: str) -> dict:
    """One section of a YAML config (a file, or the name of a shipped recipe); {} without a path."""
    from wakeword import configs
    from wakeword.validation import ConfigError, load_yaml_mapping

    if not path:
        return {}
    try:
        p = configs.resolve(path)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
    doc = load_yaml_mapping(p)
    part = doc.get(section, {})
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise ConfigError(f"config {p}", [f"{section} = {part!r}: expected a mapping of keys to values"])
    return dict(part)


def put(d: dict, key: str, value) -> None:
    """Set ``d[key]`` when a flag was given (None and empty lists mean: not given)."""
    if value is not None and value != () and value != []:
        d[key] = value


def overrides(d: dict, a: argparse.Namespace, keys: tuple[str, ...]) -> dict:
    for key in keys:
        put(d, key, getattr(a, key, None))
    return d


TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_size", "lr", "seed", "device")


def training_parent() -> argparse.ArgumentParser:
    """--data/--out and the training overrides every training command takes."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data", required=True, help="data folder (from `wakeword data build`)")
    p.add_argument("--out", required=True, help="run folder")
    for flag, typ in (("--epochs", int), ("--steps-per-epoch", int), ("--batch-size", int), ("--lr", float),
                      ("--seed", int)):
        p.add_argument(flag, type=typ)
    p.add_argument("--device")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    return p


def sets_parent() -> argparse.ArgumentParser:
    """The audio to score: a data folder's split, set YAMLs, or folders."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data", help="data folder whose split to score")
    p.add_argument("--split", default="test")
    p.add_argument("--set", action="append", help="evaluation-set YAML: root, positives, negatives, noise globs, "
                                                  "phrase (repeatable)")
    p.add_argument("--positives", action="append", help="folder of wake-phrase recordings")
    p.add_argument("--negatives", action="append", help="folder of audio that is not the wake phrase (clips or long "
                                                        "recordings)")
    return p


def scoring_parent() -> argparse.ArgumentParser:
    """The threshold and refractory period of the fixed-threshold figures."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threshold", type=float, default=None,
                   help="score threshold (default: the model's own, calibrated on its validation split)")
    p.add_argument("--refractory", type=float, default=REFRACTORY_S, help=f"seconds (default {REFRACTORY_S:g})")
    return p


def max_fpr_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--max-fpr", type=float, default=MAX_FPR, help=f"clip pAUC range (default {MAX_FPR:g})")
    return p


def eval_sets(a: argparse.Namespace, noise: bool = False) -> list:
    """The EvalSets a command's flags describe (raises SystemExit when none)."""
    from wakeword import configs
    from wakeword.evaluation.evaluate import EvalSet

    sets = [EvalSet.from_split(a.data, a.split)] if a.data else []
    sets += [EvalSet.from_yaml(y) for y in a.set or []]
    sets += [EvalSet.from_yaml(configs.eval_preset(name)) for name in getattr(a, "preset", None) or []]
    if a.positives or a.negatives:
        sets.append(EvalSet.from_dirs("folders", a.positives or [], a.negatives or [],
                                      (getattr(a, "noise", None) or []) if noise else [], getattr(a, "phrase", None)))
    if not sets:
        raise SystemExit("error: give --data (a split), --set YAML" + (", --preset real-dev" if noise else "")
                         + " or --positives/--negatives folders")
    return sets


def out_path(a: argparse.Namespace, name: str) -> Path:
    return Path(a.out) / name
