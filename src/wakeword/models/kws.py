"""The deployable detector network: a front end followed by a registered backbone.

Students and the Conformer teacher read the one log-mel front end; the Wav2Vec2 teacher reads the
waveform itself. Both score the same windows: window k covers samples
[k * score_stride * hop, k * score_stride * hop + window span) in either case.
"""
from __future__ import annotations

import torch
from torch import nn

from wakeword.features.logmel import FeatureConfig, make_frontend
from wakeword.models.registry import build_model


class Waveform(nn.Module):
    """Front end of audio-input backbones: (batch, samples) -> (batch, 1, samples), unchanged."""

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return audio.unsqueeze(1)


class WakeWordModel(nn.Module):
    """forward(audio: (batch, samples) at 16 kHz) -> (batch,) logits, one per window of audio.

    ``score_frames`` slides the backbone over the front-end output of a whole track.
    """

    def __init__(self, arch: str, arch_params: dict, feat: FeatureConfig):
        super().__init__()
        self.arch, self.feat = arch, feat
        self.backbone = build_model(arch, {**arch_params, "n_mels": feat.n_mels})
        # A pretrained backbone may only work at the rate it was trained at (it declares it).
        rate = getattr(self.backbone, "sample_rate", None)
        if rate is not None and rate != feat.sample_rate:
            raise ValueError(f"{arch} works at {rate} Hz only; the front end is set to {feat.sample_rate} Hz")
        # Builders may resolve parameters (a pretrained folder -> its config): store what rebuilds this net.
        resolved = getattr(self.backbone, "resolved_params", None)
        self.arch_params = dict(resolved) if resolved is not None else dict(arch_params)
        self.arch_params.pop("n_mels", None)
        self.input_kind = getattr(self.backbone, "input_kind", "mel")
        self.frontend: nn.Module = make_frontend(feat) if self.input_kind == "mel" else Waveform()

    @property
    def window_len(self) -> int:
        """One scored window in front-end steps (frames, or samples for audio-input backbones)."""
        f = self.feat
        # For audio: the samples spanned by window_frames frames, so both kinds see exactly the same audio.
        return f.window_frames if self.input_kind == "mel" else (f.window_frames - 1) * f.hop_length + f.n_fft

    @property
    def stride_len(self) -> int:
        """Front-end steps between two scored windows."""
        f = self.feat
        return f.score_stride if self.input_kind == "mel" else f.score_stride * f.hop_length

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.frontend(audio))

    @torch.no_grad()
    def score_frames(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Probabilities for every window of a front-end track.

        x: (n_mels, frames) log-mel, or (1, samples) for audio-input backbones. Returns (n_windows,)
        where window k covers frames [k * score_stride, k * score_stride + window_frames).
        """
        w, s = self.window_len, self.stride_len
        if x.shape[-1] < w:
            raise ValueError(f"track has {x.shape[-1]} front-end steps, fewer than one window ({w})")
        track = getattr(self.backbone, "score_track", None)  # a backbone that shares work between windows
        logits = track(x[0], w, s) if track is not None and self.input_kind == "audio" else None
        if logits is None and hasattr(self.backbone, "track_logits"):  # fully convolutional: one pass
            logits = self.backbone.track_logits(x[None])[0]
        if logits is not None:
            return torch.sigmoid(logits)
        windows = x.unfold(-1, w, s).permute(1, 0, 2)  # (n_windows, channels, w)
        out = [torch.sigmoid(self.backbone(windows[i:i + batch_size])) for i in range(0, len(windows), batch_size)]
        return torch.cat(out)
