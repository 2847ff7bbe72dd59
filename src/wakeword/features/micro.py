"""The TFLite-Micro audio front end that microWakeWord and ESPHome run, as a front end of our models.

ESPHome's ``micro_wake_word`` component computes, on the device, 40 features per 10 ms step from 30 ms windows
(TFLite Micro's audio front end: FFT, 40-channel filterbank 125-7500 Hz, noise reduction, PCAN gain control,
log scale) and hands them to the model as int8. ``pymicro-features`` 2.0.2 is that C code built for the desktop:
it returns each frame as floats, the front end's uint16 output times 0.0390625 (= 1/25.6), so values lie in
0 .. ~26. microWakeWord trains on exactly these floats and its models quantize them with scale 26/255 and zero
point -128 (what ESPHome's fixed int8 conversion of the uint16 output amounts to).

The front end is stateful (noise estimate and gain control adapt over time): a track gives the frames a device
would compute when listening to it from its start. Training windows get a fresh front end each (microWakeWord
computes its training spectrograms the same way, one clip at a time).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wakeword.audio.io import SAMPLE_RATE

MICRO_BANDS = 40  # features per frame
MICRO_WINDOW = 480  # samples per analysis window (30 ms at 16 kHz)
MICRO_HOP = 160  # samples between two frames (10 ms)
MICRO_FEATURE_SCALE = 0.0390625  # pymicro-features' float = the front end's uint16 output x this
MICRO_MAX = 26.0  # top of the feature range microWakeWord's models quantize (int8 scale 26/255, zero point -128)
# What FeatureConfig holds for this front end (the C library fixes them; the filterbank edges are informational).
MICRO_FEATURES = {"frontend": "micro", "sample_rate": SAMPLE_RATE, "n_fft": MICRO_WINDOW, "hop_length": MICRO_HOP,
                  "n_mels": MICRO_BANDS, "f_min": 125.0, "f_max": 7500.0}


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1] -> int16 samples, the conversion ``wakeword bench`` feeds pymicro-wakeword with."""
    return (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).astype(np.int16)


def micro_features(audio: np.ndarray) -> np.ndarray:
    """audio: (samples,) float32 at 16 kHz -> (40, frames) float32, one frame per 10 ms once 30 ms are in
    (frames = 1 + (samples - 480) // 160; 0 when shorter), from a fresh front end."""
    from pymicro_features import MicroFrontend

    pcm = to_pcm16(audio).tobytes()
    frontend, frames = MicroFrontend(), []
    step = 2 * MICRO_HOP  # bytes of one 10 ms chunk
    i = 0
    while i + step <= len(pcm):
        out = frontend.process_samples(pcm[i:i + step])
        i += 2 * out.samples_read
        if out.features:
            frames.append(out.features)
    if not frames:
        return np.zeros((MICRO_BANDS, 0), np.float32)
    return np.asarray(frames, np.float32).T


class MicroFeatures(nn.Module):
    """The micro front end as a module: forward(audio (batch, samples) float in [-1, 1]) -> (batch, 40, frames).

    Each row starts from a fresh front end. Computed in C, outside autograd (the front end has no parameters).
    """

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() != 2:
            raise ValueError(f"expected (batch, samples), got shape {tuple(audio.shape)}")
        rows = audio.detach().float().cpu().numpy()
        return torch.from_numpy(np.stack([micro_features(a) for a in rows])).to(audio.device)


__all__ = ["MICRO_BANDS", "MICRO_FEATURES", "MICRO_FEATURE_SCALE", "MICRO_HOP", "MICRO_MAX", "MICRO_WINDOW",
           "MicroFeatures", "micro_features", "to_pcm16"]
