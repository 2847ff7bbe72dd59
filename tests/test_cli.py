"""End to end through the console script: build -> train -> eval -> export -> score."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import REAL


def run(*args, check=True):
    exe = shutil.which("wakeword") or sys.executable
    cmd = [exe, *args] if exe.endswith("wakeword") else [exe, "-m", "wakeword.cli", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_help_lists_subcommands():
    out = run("--help").stdout
    for sub in ("data", "train", "eval", "export", "score", "demo"):
        assert sub in out


@pytest.mark.slow  # about a minute on 2 cores: `make test` runs it, `pytest -m 'not slow'` skips it
def test_end_to_end(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "run"
    run("-q", "data", "build", "--out", str(data), "--phrase", "hey computer", "--n-positive", "30",
        "--n-adversarial", "16", "--n-speech", "10", "--n-noise", "4", "--n-words", "6", "--engines", "espeak-ng,flite")
    assert (data / "manifest.csv").exists() and (data / "build_report.json").exists()
    assert any(k.endswith("/word") for k in json.loads((data / "build_report.json").read_text())["by_split_kind"])
    run("-q", "train", "--data", str(data), "--out", str(runs), "--epochs", "1", "--steps-per-epoch", "3",
        "--batch-size", "8")
    ckpt = runs / "best.pt"
    assert ckpt.exists()
    ev = tmp_path / "eval"
    out = run("-q", "eval", "--model", str(ckpt), "--data", str(data), "--out", str(ev)).stdout
    assert "test split" in out
    report = json.loads((ev / "report.json").read_text())
    res = report["sets"]["test split"]
    assert 0 <= res["pauc"] <= 1 and set(res["frr_at_fa_per_hour"]) == {"0.1", "0.5", "1.0"}
    assert (ev / "det.png").stat().st_size > 1000
    onnx_path = tmp_path / "m.onnx"
    run("export", "--model", str(ckpt), "--out", str(onnx_path))
    files = sorted((REAL / "precise_community" / "computer" / "en").glob("*.flac"))[:2] if REAL.exists() else []
    if not files:
        files = [next(data.glob("clips/*/*.wav"))]
    for model in (str(ckpt), str(onnx_path)):
        res = json.loads(run("score", "--model", model, "--json", *map(str, files)).stdout)
        assert len(res) == len(files) and all(0 <= r["max_score"] <= 1 for r in res)


def test_bad_input_gives_clear_errors(tmp_path):
    out = run("train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"), check=False)
    assert out.returncode == 2 and "data build" in out.stderr
    (tmp_path / "x.pt").write_bytes(b"junk")
    out = run("score", "--model", str(tmp_path / "x.pt"), str(tmp_path / "x.pt"), check=False)
    assert out.returncode == 2 and "checkpoint" in out.stderr
