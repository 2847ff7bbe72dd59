"""Log-mel front end: the single feature extractor for training, evaluation, streaming and export.

Frames use ``center=False`` so a frame depends only on the samples it covers: that makes the
streaming detector compute exactly the frames of the offline one, and the ONNX graph trivially
exportable.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from wakeword.defaults import SAMPLE_RATE, WINDOW_S

FRONTENDS = ("logmel", "micro")


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = SAMPLE_RATE  # Hz
    n_fft: int = 400  # samples: 25 ms analysis window
    hop_length: int = 160  # samples: 10 ms per frame
    n_mels: int = 40  # mel bands
    f_min: float = 20.0  # Hz
    f_max: float = 7600.0  # Hz; below Nyquist so 8 kHz-band-limited speech still fills the top bands
    window_s: float = WINDOW_S  # seconds of audio the classifier sees at once
    score_stride: int = 8  # frames between two scores (8 x 10 ms = 80 ms)
    log_floor: float = 1e-6  # added to mel energy before log
    # "logmel" (this module's LogMel) or "micro": the TFLite-Micro front end ESPHome's microWakeWord runs
    # (features/micro.py; n_fft, hop_length, n_mels, f_min and f_max are then fixed by that C library)
    frontend: str = "logmel"

    def __post_init__(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {FRONTENDS}, got {self.frontend!r}")
        if self.frontend == "micro":
            from wakeword.features.micro import MICRO_FEATURES

            wrong = {k: getattr(self, k) for k, v in MICRO_FEATURES.items() if getattr(self, k) != v}
            if wrong:
                raise ValueError(f"the micro front end fixes {MICRO_FEATURES}; got {wrong}")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def window_frames(self) -> int:
        """Frames in one classifier window (98 for 1 s at 25 ms / 10 ms)."""
        return n_frames(self.window_samples, self)

    @property
    def hop_s(self) -> float:
        """Seconds between two frames."""
        return self.hop_length / self.sample_rate

    @property
    def score_hop_s(self) -> float:
        """Seconds between two scores."""
        return self.score_stride * self.hop_s

    def to_dict(self) -> dict:
        return asdict(self)


def make_frontend(cfg: FeatureConfig) -> nn.Module:
    """The front-end module of ``cfg``: (batch, samples) -> (batch, n_mels, frames)."""
    if cfg.frontend == "micro":
        from wakeword.features.micro import MicroFeatures

        return MicroFeatures()
    return LogMel(cfg)


def n_frames(n_samples: int, cfg: FeatureConfig) -> int:
    """Number of frames for ``n_samples`` of audio (0 when shorter than one FFT window)."""
    if n_samples < cfg.n_fft:
        return 0
    return 1 + (n_samples - cfg.n_fft) // cfg.hop_length


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)  # HTK mel scale


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Triangular HTK mel filters, shape (n_mels, n_fft // 2 + 1), each with unit peak."""
    n_freqs = cfg.n_fft // 2 + 1
    freqs = np.linspace(0.0, cfg.sample_rate / 2, n_freqs)
    mels = np.linspace(_hz_to_mel(np.array(cfg.f_min)), _hz_to_mel(np.array(cfg.f_max)), cfg.n_mels + 2)
    hz = _mel_to_hz(mels)
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None, :] - lower) / (center - lower)
    down = (upper - freqs[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


class LogMel(nn.Module):
    """Waveform -> log-mel.

    forward(audio: (batch, samples) float32 at cfg.sample_rate) -> (batch, n_mels, frames).
    Implemented with a framing + matmul DFT instead of torch.stft so the same graph exports to ONNX
    and runs in onnxruntime without complex numbers.
    """

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.cfg = cfg
        n = cfg.n_fft
        window = torch.hann_window(n, periodic=True, dtype=torch.float64)
        k = torch.arange(n // 2 + 1, dtype=torch.float64)[:, None]
        t = torch.arange(n, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * t / n
        # Windowed real DFT as two matrices: (n_freqs, n_fft)
        self.register_buffer("dft_cos", (torch.cos(angle) * window).float(), persistent=False)
        self.register_buffer("dft_sin", (-torch.sin(angle) * window).float(), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(cfg)), persistent=False)
        # For export: build the DFT matrices inside the graph from two small index vectors instead of
        # storing 2 x 201 x 400 floats (640 KB) in the model file.
        self.dft_in_graph = False

    def _dft_in_graph(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.cfg.n_fft
        # Index vector derived from the input, so the ONNX tracer records ops instead of constants.
        idx = torch.cumsum(torch.ones_like(audio[0, :n]), 0) - 1  # 0 .. n_fft-1
        k, t = idx[: n // 2 + 1, None], idx[None, :]
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * t / n)  # periodic Hann
        # (k * t) mod n keeps the angle small, so float32 cos/sin stay exact to ~1e-6.
        angle = (2 * math.pi / n) * torch.remainder(k * t, n)
        return torch.cos(angle) * window, -torch.sin(angle) * window

    def _mel_in_graph(self, audio: torch.Tensor) -> torch.Tensor:
        """``mel_filterbank(cfg)`` computed by graph ops (float32) instead of stored (32 KB)."""
        c = self.cfg
        n_freqs = c.n_fft // 2 + 1
        idx = torch.cumsum(torch.ones_like(audio[0, : max(n_freqs, c.n_mels + 2)]), 0) - 1
        freqs = idx[:n_freqs] * (c.sample_rate / 2 / (n_freqs - 1))
        m_lo, m_hi = (float(_hz_to_mel(np.array(f))) for f in (c.f_min, c.f_max))
        mels = m_lo + idx[: c.n_mels + 2] * ((m_hi - m_lo) / (c.n_mels + 1))
        hz = 700.0 * (torch.pow(10.0, mels / 2595.0) - 1.0)
        lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
        up = (freqs[None, :] - lower) / (center - lower)
        down = (upper - freqs[None, :]) / (upper - center)
        return torch.clamp(torch.minimum(up, down), min=0.0)

    def _frames_in_graph(self, audio: torch.Tensor) -> torch.Tensor:
        """The frames of ``unfold`` from a few strided slices of gcd(n_fft, hop)-sample blocks.

        ``unfold`` exports as one Slice + Unsqueeze (and their constants) per frame: ~600 nodes for a
        1 s window. n_fft = a * g and hop = b * g with g their gcd, so frame t is blocks
        b*t .. b*t + a - 1: ``a`` strided slices (5 for 400 / 160), concatenated.
        """
        n, h = self.cfg.n_fft, self.cfg.hop_length
        g = math.gcd(n, h)
        a, b = n // g, h // g
        t = 1 + (audio.shape[1] - n) // h
        blocks = audio[:, : (t - 1) * h + n].reshape(audio.shape[0], -1, g)  # (B, n_blocks, g)
        return torch.cat([blocks[:, j: j + b * (t - 1) + 1: b] for j in range(a)], dim=2)  # (B, T, n_fft)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 2:
            raise ValueError(f"expected (batch, samples), got shape {tuple(audio.shape)}")
        if self.dft_in_graph:  # export: build everything from ops, store nothing big, keep the graph short
            frames = self._frames_in_graph(audio)
            (dft_cos, dft_sin), mel_fb = self._dft_in_graph(audio), self._mel_in_graph(audio)
        else:
            frames = audio.unfold(1, self.cfg.n_fft, self.cfg.hop_length)  # (B, T, n_fft)
            dft_cos, dft_sin, mel_fb = self.dft_cos, self.dft_sin, self.mel
        re = frames @ dft_cos.T
        im = frames @ dft_sin.T
        power = re * re + im * im  # (B, T, n_freqs)
        mel = power @ mel_fb.T  # (B, T, n_mels)
        return torch.log(mel + self.cfg.log_floor).transpose(1, 2)
