"""Checkpoints that rebuild their model by themselves: architecture, front end, resolved config."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
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
        "config": plain_data(config),
        "metrics": plain_data(metrics or {}),
        **plain_data(extra or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def plain_data(obj):
    """``obj`` with numpy scalars and paths turned into Python numbers and strings (tensors kept), so a
    checkpoint holds only what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, dict):
        out = obj.__class__((k, plain_data(v)) for k, v in obj.items())  # an OrderedDict stays one
        if hasattr(obj, "_metadata"):  # a state_dict's per-module versions
            out._metadata = obj._metadata
        return out
    if isinstance(obj, list):
        return [plain_data(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain_data(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def safe_load(path: str | Path) -> dict:
    """``torch.load`` that never runs code from the file: tensors, numbers, strings, lists and dicts only.

    A pickle that needs anything else (a crafted file, or a checkpoint written before checkpoints were
    plain data) is refused before any of it is executed."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path} was refused: it holds Python objects beyond tensors and plain data, and loading it "
            f"could run code ({str(exc).splitlines()[0][:200]}). Nothing in it was executed. If it is an "
            f"old wakeword checkpoint from a source you trust, convert it once with "
            f"`wakeword convert-checkpoint {path} NEW.pt --trust-source`") from None


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely (no code from the file runs); a file that is not one of ours gives a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = safe_load(path)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a wakeword checkpoint (expected format '{FORMAT}')")
    return ckpt


def convert_checkpoint(src: str | Path, dst: str | Path) -> dict:
    """Rewrite an old checkpoint as plain data so it loads safely. This is the one place that unpickles
    arbitrary objects: call it only on a file from a source you trust."""
    src, dst = Path(src), Path(dst)
    ckpt = torch.load(src, map_location="cpu", weights_only=False)  # noqa: S614 - explicit, trusted conversion
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{src} is not a wakeword checkpoint (expected format '{FORMAT}')")
    plain = plain_data(ckpt)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    torch.save(plain, tmp)
    tmp.replace(dst)
    safe_load(dst)  # what we wrote must pass the safe loader
    return plain


def model_from_checkpoint(ckpt: dict) -> WakeWordModel:
    model = WakeWordModel(ckpt["arch"], ckpt["arch_params"], FeatureConfig(**ckpt["features"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model


def load_model(path: str | Path) -> WakeWordModel:
    return model_from_checkpoint(load_checkpoint(path))
