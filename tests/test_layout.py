"""The package's one-way dependency rule, read from the source with ``ast`` (every import, at module level or inside
a function): a module may import its own layer and the layers before it, never one after it.

    defaults, validation, configs, evaluation.metrics   (leaves: anyone may import them)
    audio -> features -> dataset -> evaluation.scoring -> models -> training -> runtime -> evaluation
          -> export -> recipes (pipeline, experiments), hpo, mining -> ui -> cli

The scoring protocol (``evaluation.scoring``) sits before training because training's validation scores through it;
it needs audio, the data set layer and the metrics only.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "wakeword"

# (module prefix, rank): the longest matching prefix decides a module's layer
LAYERS = {
    "wakeword.defaults": 0, "wakeword.validation": 0, "wakeword.configs": 0,
    "wakeword.evaluation.metrics": 0,
    "wakeword.audio": 1,
    "wakeword.features": 2,
    "wakeword.dataset": 3,
    "wakeword.evaluation.scoring": 4,
    "wakeword.models": 5,
    "wakeword.training": 6,
    "wakeword.runtime": 7, "wakeword.inference": 7,
    "wakeword.evaluation": 8,
    "wakeword.export": 9, "wakeword.oww_export": 9, "wakeword.mww_export": 9, "wakeword.mww_tflite": 9,
    "wakeword.pipeline": 10, "wakeword.experiments": 10, "wakeword.hpo": 10, "wakeword.mining": 10,
    "wakeword.ui": 11,
    "wakeword.cli": 12,
}
FACADE = 13  # the package root: lazy public attributes (wakeword.Detector) over the layers; nothing imports it


def _layer(module: str) -> int:
    if module == "wakeword":
        return FACADE
    named = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    if not named:
        raise ValueError(f"{module}: no layer in the dependency rule; add its package to LAYERS")
    return LAYERS[max(named, key=len)]


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from wakeword.evaluation import metrics` imports the submodule metrics (plus its package's
            # __init__, which the rule keeps free of imports); `from wakeword.x import name` imports wakeword.x
            subs = {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
            out |= subs or {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m == "wakeword" or m.startswith("wakeword.")}


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (SRC.parent / rel).with_suffix(".py").is_file() or (SRC.parent / rel / "__init__.py").is_file()


MODULES = sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer():
    assert MODULES
    for p in MODULES:
        _layer(_module(p))  # raises ValueError for a package the rule does not name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module(p))
def test_imports_flow_one_way(path):
    me = _module(path)
    bad = sorted(m for m in _imports(path) if _layer(m) > _layer(me))
    assert not bad, f"{me} (layer {_layer(me)}) imports later layers: {[(m, _layer(m)) for m in bad]}"


def test_no_relative_imports():
    """Absolute imports only, so the rule above sees every one of them."""
    for p in MODULES:
        rel = [n for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ImportFrom) and n.level]
        assert not rel, f"{_module(p)} uses a relative import"


def test_the_rule_catches_a_backward_import(tmp_path):
    """The checker itself: an evaluation module importing the CLI is flagged."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from wakeword.cli import main\n")
    assert _imports(f) == {"wakeword.cli"} and _layer("wakeword.cli") > _layer("wakeword.evaluation.bench")


def test_make_targets_call_files_that_exist():
    """`make bench` once called a script that did not exist: every path a Makefile recipe names is there."""
    import re

    root = SRC.parents[1]
    recipes = [ln.strip() for ln in (root / "Makefile").read_text().splitlines() if ln.startswith("\t")]
    paths = [m for ln in recipes for m in re.findall(r"[\w./-]+\.(?:py|sh)\b", ln)]
    assert "benchmarks/run_benchmarks.py" in paths and "scripts/setup.sh" in paths
    for p in paths:
        assert (root / p).is_file(), f"the Makefile calls {p}, which does not exist"
    ci = (root / ".ci" / "run").read_text()
    assert "make test" in ci
    assert re.search(r"^test:.*\blint\b", (root / "Makefile").read_text(), re.M), "make test must lint and type check"
