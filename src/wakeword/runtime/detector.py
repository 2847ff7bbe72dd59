"""The torch runtime: load a checkpoint, score a track, detect events, or stream audio in chunks."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wakeword.audio.io import load_audio
from wakeword.defaults import REFRACTORY_S, model_threshold
from wakeword.models.base import StreamingBackbone
from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint


def trained_phrase(data_dir: str | None) -> str | None:
    """The wake phrase of the data a checkpoint was trained on (None when the folder is gone)."""
    try:
        return json.loads((Path(data_dir) / "data_config.json").read_text()).get("phrase") if data_dir else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Event:
    time_s: float  # end of the window that crossed the threshold, seconds from the start
    score: float  # score of that window


class Detector:
    """A trained wake-word detector.

    ``score_track(audio)`` -> (scores (n_windows,) in [0, 1], hop_s); score k belongs to the window
    ending at ``(k * hop_s + window_s)`` seconds.
    """

    def __init__(self, model, metadata: dict | None = None):
        self.model = model.eval()
        self.feat = model.feat
        self.metadata = metadata or {}

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        ckpt = load_checkpoint(path)
        meta = {"path": str(path), "metrics": ckpt.get("metrics", {}), "config": ckpt.get("config", {}),
                "threshold": ckpt.get("threshold")}
        return cls(model_from_checkpoint(ckpt), meta)

    @property
    def phrase(self) -> str | None:
        """The wake phrase of the data it was trained on (None when unknown)."""
        return trained_phrase(self.metadata.get("config", {}).get("data_dir"))

    @property
    def hop_s(self) -> float:
        return self.feat.score_hop_s

    @property
    def default_threshold(self) -> float:
        return model_threshold(self.metadata.get("threshold"))

    def _check(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio (samples,), got shape {audio.shape}")
        return audio

    @torch.no_grad()
    def score_track(self, audio: np.ndarray) -> tuple[np.ndarray, float]:
        """audio: float32 mono at 16 kHz. Shorter than one window: zero-padded to one window."""
        audio = self._check(audio)
        if len(audio) < self.feat.window_samples:
            audio = np.concatenate([audio, np.zeros(self.feat.window_samples - len(audio), np.float32)])
        mel = self.model.frontend(torch.from_numpy(audio)[None])[0]
        return self.model.score_frames(mel).numpy().astype(np.float32), self.hop_s

    def score_file(self, path: str | Path) -> tuple[np.ndarray, float]:
        """Any format/rate/channel count libsndfile reads."""
        return self.score_track(load_audio(path))

    def detect(self, audio: np.ndarray, threshold: float | None = None, refractory_s: float = REFRACTORY_S) -> list[Event]:
        from wakeword.evaluation.metrics import detect_events

        t = self.default_threshold if threshold is None else threshold
        scores, hop = self.score_track(audio)
        times = detect_events(scores, t, hop, refractory_s)
        idx = np.round(times / hop).astype(int)
        return [Event(float(i * hop + self.feat.window_s), float(scores[i])) for i in idx]

    def stream(self) -> StreamingDetector | StepStreamingDetector | MicroStreamingDetector:
        if self.feat.frontend == "micro":  # a stateful front end: it must hear the audio once, in order
            return MicroStreamingDetector(self)
        if self.model.input_kind != "mel":
            if isinstance(self.model.backbone, StreamingBackbone):
                return StepStreamingDetector(self)
            raise ValueError(f"streaming needs a log-mel detector; '{self.model.arch}' reads raw audio")
        return StreamingDetector(self)


class StreamingDetector:
    """Scores audio fed in chunks of any size; every score equals ``score_track``'s for the same window.

    Latency is bounded: a window's score is returned by the ``feed`` call that completes its last
    frame. Memory is bounded: only the last window of frames and under one hop of samples are kept.
    """

    def __init__(self, detector: Detector):
        self.det = detector
        self.feat = detector.feat
        self.reset()

    def reset(self) -> None:
        self._samples = np.zeros(0, dtype=np.float32)
        self._frames: list[torch.Tensor] = []  # each (n_mels,)
        self._n_frames = 0  # frames produced so far

    @torch.no_grad()
    def feed(self, chunk: np.ndarray) -> np.ndarray:
        """Append audio; return the scores of windows completed by it (possibly none)."""
        f = self.feat
        self._samples = np.concatenate([self._samples, np.asarray(chunk, np.float32)])
        n_new = 0 if len(self._samples) < f.n_fft else 1 + (len(self._samples) - f.n_fft) // f.hop_length
        if n_new == 0:
            return np.zeros(0, np.float32)
        used = (n_new - 1) * f.hop_length + f.n_fft
        mel = self.det.model.frontend(torch.from_numpy(self._samples[:used])[None])[0]  # (n_mels, n_new)
        self._samples = self._samples[n_new * f.hop_length:]
        scores = []
        w, s = f.window_frames, f.score_stride
        for t in range(n_new):
            self._frames.append(mel[:, t])
            if len(self._frames) > w:
                self._frames.pop(0)
            self._n_frames += 1
            end = self._n_frames - 1  # index of the newest frame
            if end >= w - 1 and (end - (w - 1)) % s == 0:
                window = torch.stack(self._frames, dim=1)[None]
                scores.append(float(torch.sigmoid(self.det.model.backbone(window))[0]))
        return np.array(scores, dtype=np.float32)


class StepStreamingDetector:
    """Streaming for raw-audio models with a streaming step (speech_embedding): the same step and contract
    as their streaming ONNX graph, run in torch. Feed chunks of any size; each score covers the last 1 s
    and equals ``score_track``'s window ``i + contract["first_window"]`` for the i-th score returned."""

    def __init__(self, detector: Detector):
        self.det = detector
        self.step, self.contract, _ = detector.model.backbone.stream_step()
        self.step.eval()
        self.reset()

    def reset(self) -> None:
        c = self.contract
        self._pending = np.zeros(0, np.float32)
        self._samples: torch.Tensor | None = None
        self._caches = [torch.zeros(*shape) for shape in c["caches"].values()]
        self._calls = 0

    @torch.no_grad()
    def feed(self, chunk: np.ndarray) -> np.ndarray:
        c = self.contract
        self._pending = np.concatenate([self._pending, np.asarray(chunk, np.float32)])
        if self._samples is None:
            if len(self._pending) < c["sample_cache"]:
                return np.zeros(0, np.float32)
            self._samples = torch.from_numpy(self._pending[None, :c["sample_cache"]].copy())
            self._pending = self._pending[c["sample_cache"]:]
        out = []
        n = c["chunk"]
        while len(self._pending) >= n:
            audio = torch.from_numpy(self._pending[None, :n].copy())
            self._pending = self._pending[n:]
            score, self._samples, *self._caches = self.step(audio, self._samples, *self._caches)
            self._calls += 1
            if self._calls > c["warmup_calls"]:
                out.append(float(score[0]))
        return np.array(out, np.float32)


__all__ = ["Detector", "Event", "StepStreamingDetector", "StreamingDetector", "trained_phrase"]


class MicroStreamingDetector:
    """Streaming for models on the micro front end (ESPHome's): one front end runs over everything fed, as on the
    device, and a score comes every ``score_stride`` frames once a window is full. The i-th score equals
    ``score_track``'s i-th on the same audio (the front end's state never restarts between chunks)."""

    def __init__(self, detector: Detector):
        self.det, self.feat = detector, detector.feat
        self.reset()

    def reset(self) -> None:
        from pymicro_features import MicroFrontend

        self._frontend = MicroFrontend()
        self._pcm = b""
        self._frames: list[np.ndarray] = []  # the last window's frames, each (n_mels,)
        self._n = 0  # frames produced so far

    @torch.no_grad()
    def feed(self, chunk: np.ndarray) -> np.ndarray:
        from wakeword.features.micro import to_pcm16

        f = self.feat
        self._pcm += to_pcm16(chunk).tobytes()
        step, i, out = 2 * f.hop_length, 0, []
        while i + step <= len(self._pcm):
            res = self._frontend.process_samples(self._pcm[i:i + step])
            i += 2 * res.samples_read
            if not res.features:
                continue
            self._frames = (self._frames + [np.asarray(res.features, np.float32)])[-f.window_frames:]
            self._n += 1
            if self._n >= f.window_frames and (self._n - f.window_frames) % f.score_stride == 0:
                window = torch.from_numpy(np.stack(self._frames, axis=1))[None]
                out.append(float(torch.sigmoid(self.det.model.backbone(window))[0]))
        self._pcm = self._pcm[i:]
        return np.array(out, np.float32)
