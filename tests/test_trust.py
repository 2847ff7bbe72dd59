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
