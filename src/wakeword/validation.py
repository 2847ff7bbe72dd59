"""Checking configs as they are loaded: every problem at once, one line each (key, value, what is expected).

A config is a frozen dataclass; YAML and CLI flags fill it in. ``check_config`` compares a mapping with
the dataclass's field types (int, float, str, bool, tuples, dicts) and with its ``LIMITS`` (numeric
bounds), so ``lr: "fast"`` or ``epochs: 0`` stop the command with a clear message instead of a
traceback deep in training, or a run that made nothing.
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from pathlib import Path

__all__ = ["ConfigError", "check_config", "load_yaml_mapping", "yaml_numbers"]


class ConfigError(ValueError):
    """A config with problems; ``str()`` lists one per line."""

    def __init__(self, where: str, problems: list[str]):
        self.where, self.problems = where, problems
        super().__init__(f"invalid {where}:\n" + "\n".join(f"  {p}" for p in problems))


def load_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    """A YAML file that must hold a mapping (or be empty); malformed YAML and other shapes are a ConfigError."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p}", [f"not valid YAML: {' '.join(str(exc).split())}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p}", ["not a text file"]) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} {p}", [f"must hold a mapping of keys to values, not a {_kind(doc)}"])
    return doc


def check_config(cls, d: dict, section: str) -> list[str]:
    """Problems of mapping ``d`` as a ``cls`` (a dataclass): unknown keys, wrong types, values out of
    ``cls.LIMITS`` ({field: (low, high, inclusive_low)}; None = unbounded). Empty when it is fine."""
    if not isinstance(d, dict):
        return [f"{section}: expected a mapping of keys to values, got {_kind(d)} {d!r}"]
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    problems = [f"{section}.{k}: unknown {section} config key (known: {', '.join(known)})" for k in d if k not in known]
    limits = getattr(cls, "LIMITS", {})
    for k in known:
        if k not in d:
            continue
        v = d[k]
        expected = _type_problem(hints[k], v)
        if expected:
            problems.append(f"{section}.{k} = {v!r}: expected {expected}")
            continue
        if k in limits and isinstance(v, (int, float)):
            lo, hi, lo_incl = limits[k]
            if (lo is not None and (v < lo or (v == lo and not lo_incl))) or (hi is not None and v > hi):
                problems.append(f"{section}.{k} = {v!r}: expected {_range_text(lo, hi, lo_incl)}")
    return problems


def yaml_numbers(cls, d: dict) -> dict:
    """``d`` with float fields given as exponent strings made numbers: YAML 1.1 (PyYAML) reads ``lr: 1e-3``
    as the string '1e-3'. Other strings stay, for ``check_config`` to report."""
    if not isinstance(d, dict):
        return d
    hints = typing.get_type_hints(cls)
    out = dict(d)
    for k, v in d.items():
        if hints.get(k) is float and isinstance(v, str):
            try:
                x = float(v)
            except ValueError:
                continue
            if math.isfinite(x) and any(c.isdigit() for c in v):
                out[k] = x
    return out


def _type_problem(tp, v) -> str:
    """'' when ``v`` fits type ``tp``, else what was expected."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        ok = v is None
    elif tp is bool:
        ok = isinstance(v, bool)
    elif tp is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif tp is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    elif tp is str:
        ok = isinstance(v, str)
    elif tp is dict or origin is dict:
        ok = isinstance(v, dict)
    elif origin in (tuple, list):
        if not isinstance(v, (list, tuple)):
            ok = False
        elif len(args) == 2 and args[1] is Ellipsis:
            ok = not any(_type_problem(args[0], x) for x in v)
        else:
            ok = (not args or len(v) == len(args)) and not any(_type_problem(t, x) for x, t in zip(v, args))
    elif origin is typing.Union or isinstance(tp, types.UnionType):
        ok = any(not _type_problem(t, v) for t in args)
    else:
        return ""  # anything else is checked where it is used
    return "" if ok else _describe(tp)


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    simple = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
              dict: "a mapping"}
    if tp in simple:
        return simple[tp]
    if origin is dict:
        return "a mapping"
    if origin in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if args and len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return "a list"
    if origin is typing.Union or isinstance(tp, types.UnionType):
        return " or ".join(_describe(t) for t in args)
    return str(tp)


def _plural(tp) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, _describe(tp))


def _range_text(lo, hi, lo_incl) -> str:
    if hi is None:
        return f"a value {'>=' if lo_incl else '>'} {lo}"
    if lo is None:
        return f"a value <= {hi}"
    return f"a value in {'[' if lo_incl else '('}{lo}, {hi}]"


def _kind(v) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(v), type(v).__name__)
