"""Checkpoints that rebuild their model by themselves: architecture, front end, resolved config."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from wakeword.features.logmel import FeatureConfig
from wakeword.models.kws import WakeWordModel

FORMAT = "wakeword-checkpoint-v1"


def save_checkpoint(path: str | Path, model: WakeWordModel, config: dict, metrics: dict | None = None,
                    extra: dict | None = None) -> None:
    """Atomic save (a kill during the write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "arch": model.arch,
        "arch_params": model.arch_params,
        "features": model.feat.to_dict(),
        "state_dict": model.state_dict(),
        "config": config,
        "metrics": metrics or {},
        **(extra or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint; a file that is not one of ours gives a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a wakeword checkpoint (expected format '{FORMAT}')")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> WakeWordModel:
    model = WakeWordModel(ckpt["arch"], ckpt["arch_params"], FeatureConfig(**ckpt["features"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model


def load_model(path: str | Path) -> WakeWordModel:
    return model_from_checkpoint(load_checkpoint(path))
