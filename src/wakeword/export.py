"""ONNX export with the log-mel front end inside the graph: the device feeds raw 16 kHz audio.

Graph: input ``audio`` (batch, window_samples) float32 in [-1, 1] -> output ``score`` (batch,) in
[0, 1]. The front-end parameters travel in the model's metadata so a runtime can check its audio.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wakeword.models.kws import WakeWordModel

logger = logging.getLogger(__name__)

ONNX_FORMAT = "wakeword-onnx-v1"


class _Scorer(nn.Module):
    def __init__(self, model: WakeWordModel):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(audio))


def export_onnx(model: WakeWordModel, path: str | Path, metadata: dict | None = None, opset: int = 18) -> Path:
    """Write the window scorer as ONNX; returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = torch.zeros(1, model.feat.window_samples)
    torch.onnx.export(_Scorer(model), (example,), str(path), input_names=["audio"], output_names=["score"],
                      dynamic_axes={"audio": {0: "batch"}, "score": {0: "batch"}}, opset_version=opset,
                      dynamo=False)
    proto = onnx.load(str(path))
    meta = {"format": ONNX_FORMAT, "features": json.dumps(model.feat.to_dict()), "arch": model.arch,
            **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return path


class OnnxDetector:
    """Runs an exported model with onnxruntime only; the same windows as ``Detector.score_track``."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT:
            raise ValueError(f"{path} is not a wakeword ONNX export (no '{ONNX_FORMAT}' metadata)")
        self.features = json.loads(meta["features"])
        self.window_samples = int(round(self.features["window_s"] * self.features["sample_rate"]))
        self.stride_samples = self.features["score_stride"] * self.features["hop_length"]

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """windows: (batch, window_samples) float32 -> (batch,) scores."""
        return self.session.run(["score"], {"audio": windows.astype(np.float32)})[0]

    def score_track(self, audio: np.ndarray, batch: int = 64) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        if len(audio) < self.window_samples:
            audio = np.concatenate([audio, np.zeros(self.window_samples - len(audio), np.float32)])
        n = 1 + (len(audio) - self.window_samples) // self.stride_samples
        idx = np.arange(n)[:, None] * self.stride_samples + np.arange(self.window_samples)[None]
        wins = audio[idx]
        return np.concatenate([self.score_windows(wins[i:i + batch]) for i in range(0, n, batch)])
