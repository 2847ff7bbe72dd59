"""Hostile inputs (issue #17): files that try to run code, concurrent writers, bad configs and phrases."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from wakeword.cli import main


class _RunsCode:
    """Unpickling this writes a marker file: what a crafted checkpoint would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _crafted_checkpoint(path: Path, marker: Path) -> Path:
    payload = {"format": "wakeword-checkpoint-v1", "arch": "mobilenetv3", "evil": _RunsCode(marker)}
    torch.save(payload, path)  # torch.save pickles: the file is a valid PyTorch archive
    return path


def test_crafted_checkpoint_runs_no_code(tmp_path):
    from wakeword.training.checkpoint import load_checkpoint

    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(ValueError, match="Nothing in it was executed"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_crafted_checkpoint_through_score_cli(tmp_path, capsys):
    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(tmp_path / "evil.pt", marker)
    wav = tmp_path / "a.wav"
    import numpy as np
    import soundfile as sf

    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["score", "--model", str(ckpt), str(wav)]) != 0
    assert not marker.exists()
    assert "convert-checkpoint" in capsys.readouterr().err


def test_old_pickled_checkpoint_converts_only_when_trusted(tiny_run, tmp_path):
    """A checkpoint holding a non-tensor Python object (as older writers could) is refused with the
    conversion command; the conversion needs --trust-source and its output loads safely."""
    from wakeword.training.checkpoint import load_checkpoint, load_model

    old = torch.load(tiny_run / "best.pt", weights_only=True)
    old["metrics"] = {k: __import__("numpy").float64(v) if isinstance(v, float) else v
                      for k, v in old["metrics"].items()}  # numpy scalars need the full unpickler
    legacy = tmp_path / "legacy.pt"
    torch.save(old, legacy)
    with pytest.raises(ValueError, match="convert-checkpoint"):
        load_checkpoint(legacy)
    new = tmp_path / "converted.pt"
    with pytest.raises(SystemExit):
        main(["convert-checkpoint", str(legacy), str(new)])
    assert not new.exists()
    assert main(["convert-checkpoint", str(legacy), str(new), "--trust-source"]) == 0
    ckpt = load_checkpoint(new)
    assert ckpt["metrics"]["val_pauc"] == pytest.approx(float(old["metrics"]["val_pauc"]))
    x = torch.zeros(1, 16000)
    assert torch.equal(load_model(new)(x), load_model(tiny_run / "best.pt")(x))


def test_every_checkpoint_the_suite_writes_is_plain_data(tiny_run):
    for name in ("best.pt", "last.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(tiny_run / name) == []


# ------------------------------------------------------------------ one writer per data folder
NOISE_ONLY = ["--phrase", "computer", "--n-positive", "0", "--n-adversarial", "0", "--n-speech", "0",
              "--n-words", "0", "--engines", "espeak-ng", "--workers", "1"]


def test_concurrent_builds_on_one_folder_do_not_duplicate_rows(tmp_path):
    import subprocess
    import sys
    import time

    from wakeword.dataset.build import DataConfig, build
    from wakeword.dataset.manifest import DataFolderBusy, read_manifest

    data = tmp_path / "data"
    first = subprocess.Popen([sys.executable, "-m", "wakeword.cli", "-q", "data", "build", "--out", str(data),
                              *NOISE_ONLY, "--n-noise", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 120
    while not (data / "manifest.csv").exists() and time.time() < deadline:
        time.sleep(0.01)
    assert (data / "manifest.csv").exists(), first.stderr.read() if first.poll() is not None else "no manifest"
    cfg = DataConfig(phrase="computer", n_positive=0, n_adversarial=0, n_speech=0, n_words=0, n_noise=120,
                     engines=("espeak-ng",), workers=1)
    with pytest.raises(DataFolderBusy, match="one writer per data folder"):
        build(cfg, data, progress=False)  # while the first build is still writing
    assert first.wait(180) == 0, first.stderr.read()
    build(cfg, data, progress=False)  # afterwards it resumes: nothing left to do
    ids = [r.clip_id for r in read_manifest(data)]
    with open(data / "manifest.csv") as f:
        lines = f.read().splitlines()[1:]
    assert len(ids) == len(set(ids)) == len(lines) == 120


def test_second_build_through_the_cli_says_why(tmp_path, capsys):
    import subprocess
    import sys
    import time

    data = tmp_path / "data"
    first = subprocess.Popen([sys.executable, "-m", "wakeword.cli", "-q", "data", "build", "--out", str(data),
                              *NOISE_ONLY, "--n-noise", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (data / "manifest.csv").exists() and first.poll() is None:
        time.sleep(0.01)
    assert main(["-q", "data", "build", "--out", str(data), *NOISE_ONLY, "--n-noise", "120"]) == 2
    assert "one writer per data folder" in capsys.readouterr().err
    first.wait(180)


def test_manifest_reader_reads_each_clip_once(tiny_data, tmp_path):
    import shutil

    from wakeword.dataset.manifest import read_manifest

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    text = (data / "manifest.csv").read_text()
    header, body = text.split("\n", 1)
    (data / "manifest.csv").write_text(header + "\n" + body + body)  # what two racing writers left behind
    rows = read_manifest(data)
    assert len(rows) == len(read_manifest(tiny_data)) == len({r.clip_id for r in rows})
