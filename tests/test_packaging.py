"""The package stands on its own: shipped configs, and a wheel installed outside the checkout runs the CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_checkout_configs_are_the_shipped_ones():
    """configs/ at the root holds copies of the package's configs (the one source); they must not drift."""
    from wakeword import configs

    shipped = Path(configs.shipped("demo")).parent
    names = sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*.yaml"))
    assert "demo.yaml" in names and "eval/real_dev_computer.yaml" in names
    for name in names:
        assert (REPO / "configs" / name).read_bytes() == (shipped / name).read_bytes(), (
            f"configs/{name} differs from src/wakeword/configs/{name}: edit the package's copy and copy it over")


def test_config_names_resolve_to_shipped_recipes(tmp_path, monkeypatch):
    from wakeword import configs

    monkeypatch.chdir(tmp_path)  # no checkout here: `configs/demo.yaml` is not a file
    assert configs.resolve(None) == configs.shipped("demo")
    assert configs.resolve("demo_student") == configs.shipped("demo_student")
    assert configs.resolve("configs/demo_distilled.yaml") == configs.shipped("demo_distilled")
    own = tmp_path / "mine.yaml"
    own.write_text("train: {epochs: 1}\n")
    assert configs.resolve(str(own)) == own
    with pytest.raises(FileNotFoundError, match="shipped recipes"):
        configs.resolve("nope.yaml")
    with pytest.raises(ValueError, match="unknown preset"):
        configs.eval_preset("nope")
    # a set named as the demo config names it resolves to the shipped set outside a checkout
    assert configs.eval_set_path("configs/eval/real_dev_computer.yaml") == configs.shipped("eval/real_dev_computer")


def test_every_shipped_recipe_loads():
    """Each recipe usable by name parses into the configs its commands build (a typo fails here, not after an hour
    of data building); the full recipe is the demo's training on data with Kokoro in it."""
    import yaml

    from wakeword import configs
    from wakeword.dataset.build import DataConfig
    from wakeword.training.fit import TrainConfig

    for name in configs.RECIPES:
        d = yaml.safe_load(configs.shipped(name).read_text())
        if "data" in d:
            DataConfig.from_dict(d["data"])
        TrainConfig.from_dict(d["train"])
    full = yaml.safe_load(configs.shipped("full").read_text())
    demo = yaml.safe_load(configs.shipped("demo").read_text())
    assert full["data"]["engine_weights_by_kind"]["positive"]["kokoro"] > 0
    for k in ("cache_draws", "epochs", "steps_per_epoch", "model", "lr", "positive_fraction", "adversarial_fraction"):
        assert full["train"][k] == demo["train"][k], k
    assert TrainConfig.from_dict(full["train"]).threshold_fa_per_hour == 0.5
    # the ESPHome student distils on the data its teacher (the demo's model) trained on, plus real voice packs
    kd = yaml.safe_load(configs.shipped("demo_micro_distilled").read_text())["data"]
    voices = kd.pop("optional_negative_dirs")
    assert kd == demo["data"] and any("hedgewars" in v for v in voices)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_runs_the_cli(tmp_path):
    """Build a wheel, install it (no dependencies: they come from the system site) into a fresh venv, and run
    data build -> train (a shipped recipe by name) -> eval -> score -> export from a folder outside the checkout."""
    src = tmp_path / "src_copy"  # built from a copy: an in-tree build would leave build/ in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", src / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
          str(src)], cwd=tmp_path)
    wheel = next(dist.glob("wakeword-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    py = str(venv / "bin" / "python")
    # --ignore-installed: the system site may hold an (editable) wakeword of the same version
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([py, "-c", ("import wakeword, wakeword.configs as c; print(wakeword.__file__); "
                            "print(c.shipped('demo'))")], cwd=work, env=env).stdout.split()
    site = venv / "lib"
    assert all(Path(p).resolve().is_relative_to(site.resolve()) for p in where), (
        f"not imported from the wheel: {where}")
    cli = str(venv / "bin" / "wakeword")
    _run([cli, "-q", "data", "build", "--out", "data", "--phrase", "computer", "--engines", "espeak-ng",
          "--n-positive", "16", "--n-adversarial", "8", "--n-speech", "8", "--n-noise", "4", "--n-words", "0"],
         cwd=work, env=env)
    _run([cli, "-q", "train", "--config", "demo_student", "--data", "data", "--out", "run", "--epochs", "1",
          "--steps-per-epoch", "2", "--batch-size", "8"], cwd=work, env=env)
    assert (work / "run" / "best.pt").is_file()
    out = _run([cli, "-q", "eval", "--model", "run/best.pt", "--data", "data", "--out", "eval"], cwd=work,
               env=env).stdout
    assert "test split" in out and (work / "eval" / "report.json").is_file()
    n_clips = sum(1 for _ in (work / "data" / "clips").rglob("*.wav"))
    out = _run([cli, "-q", "score", "--model", "run/best.pt", "data/clips"], cwd=work, env=env).stdout
    assert out.count("max=") == n_clips > 0
    assert out.strip().splitlines()[-1].startswith(f"# {n_clips} files, ") and "(the model's own)" in out
    _run([cli, "-q", "export", "--model", "run/best.pt", "--out", "export/model.onnx"], cwd=work, env=env)
    assert (work / "export" / "model.onnx").is_file()
