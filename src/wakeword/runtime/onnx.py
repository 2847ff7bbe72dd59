"""The onnxruntime detectors: what a device runs, with no torch. ``OnnxDetector`` scores the window graph over
sliding windows (the same windows as the torch ``Detector.score_track``); ``OnnxStreamer`` drives the streaming graph
hop by hop."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wakeword.defaults import model_threshold
from wakeword.features.logmel import FeatureConfig

ONNX_FORMAT = "wakeword-onnx-v1"  # the metadata "format" of a window export ("-streaming" appended: streaming)


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
        if meta.get("format") == ONNX_FORMAT + "-streaming":
            raise ValueError(f"{path} is a streaming export: score it with `wakeword score` / `bench`, or "
                             "OnnxStreamer (it is fed hop by hop), not as a window model")
        if meta.get("format") != ONNX_FORMAT:
            raise ValueError(f"{path} is not a wakeword ONNX export (no '{ONNX_FORMAT}' metadata)")
        try:
            self.features = json.loads(meta["features"])
            self.feat = FeatureConfig(**self.features)
            if self.feat.sample_rate <= 0 or self.feat.window_samples <= 0:
                raise ValueError("non-positive sample rate or window")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} has broken wakeword metadata (its 'features' entry: {exc!r}); "
                             "export the model again") from None
        self.metadata = {"path": str(path), **{k: v for k, v in meta.items() if k != "features"}}
        self.window_samples = self.feat.window_samples
        self.stride_samples = self.feat.score_stride * self.feat.hop_length

    @property
    def default_threshold(self) -> float:
        """The threshold stored at export (the checkpoint's), else the fallback (wakeword.defaults)."""
        t = json.loads(self.metadata.get("threshold", "null"))
        return model_threshold(t)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """windows: (batch, window_samples) float32 -> (batch,) scores."""
        return self.session.run(["score"], {"audio": windows.astype(np.float32)})[0]

    def score_track(self, audio: np.ndarray, batch: int = 64) -> tuple[np.ndarray, float]:
        """Same contract as ``Detector.score_track``: (scores (n_windows,), hop_s)."""
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio (samples,), got shape {audio.shape}")
        if len(audio) < self.window_samples:
            audio = np.concatenate([audio, np.zeros(self.window_samples - len(audio), np.float32)])
        # A view of every window, copied one batch at a time: memory stays flat however long the track
        # (materialising all windows of 20 minutes took 3.45 GB).
        wins = np.lib.stride_tricks.sliding_window_view(audio, self.window_samples)[::self.stride_samples]
        scores = np.concatenate([self.score_windows(np.ascontiguousarray(wins[i:i + batch]))
                                 for i in range(0, len(wins), batch)])
        return scores, self.feat.score_hop_s


class OnnxStreamer:
    """Drives a streaming export with onnxruntime only; feed any chunk sizes, get scores as windows complete."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT + "-streaming":
            raise ValueError(f"{path} is not a wakeword streaming export")
        try:
            self.c = json.loads(meta["stream"])
            for key in ("sample_rate", "chunk", "sample_cache", "warmup_calls"):
                if not isinstance(self.c[key], int) or self.c[key] < (0 if key == "warmup_calls" else 1):
                    raise ValueError(f"{key} = {self.c[key]!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} has broken wakeword streaming metadata ({exc!r}); export the model again") \
                from None
        self.record: list | None = None  # when a list: every call's inputs are appended (INT8 calibration)
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)
        self._samples: np.ndarray | None = None
        self._caches = self.initial_caches()
        self._calls = 0

    def initial_caches(self) -> dict[str, np.ndarray]:
        """The state inputs besides the sample cache, as a stream starts (zeros), by input name."""
        # exports before the contract listed its caches have the one log-mel feature cache
        shapes = self.c.get("caches") or {"feature_cache": [1, self.c["n_mels"], self.c["feature_cache_frames"]]}
        return {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        """Append audio (float32 mono at the model's rate); return scores of the windows it completed."""
        self._pending = np.concatenate([self._pending, np.asarray(chunk, np.float32)])
        out = []
        if self._samples is None:
            if len(self._pending) < self.c["sample_cache"]:
                return np.zeros(0, np.float32)
            self._samples = self._pending[None, : self.c["sample_cache"]]
            self._pending = self._pending[self.c["sample_cache"]:]
        n = self.c["chunk"]
        while len(self._pending) >= n:
            audio, self._pending = self._pending[None, :n], self._pending[n:]
            feed = {"audio": audio, "sample_cache": self._samples, **self._caches}
            if self.record is not None:
                self.record.append(feed)
            score, self._samples, *caches = self.session.run(None, feed)
            self._caches = dict(zip(self._caches, caches))
            self._calls += 1
            if self._calls > self.c["warmup_calls"]:
                out.append(float(score[0]))
        return np.array(out, np.float32)


__all__ = ["ONNX_FORMAT", "OnnxDetector", "OnnxStreamer"]
