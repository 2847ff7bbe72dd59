"""The deployable detector network: the log-mel front end followed by a registered backbone."""
from __future__ import annotations

import torch
from torch import nn

from wakeword.features.logmel import FeatureConfig, LogMel
from wakeword.models.registry import build_model


class WakeWordModel(nn.Module):
    """forward(audio: (batch, samples) at 16 kHz) -> (batch,) logits, one per window of audio.

    ``score_frames`` slides the backbone over the log-mel of a whole track, computing each frame once.
    """

    def __init__(self, arch: str, arch_params: dict, feat: FeatureConfig):
        super().__init__()
        self.arch, self.arch_params, self.feat = arch, dict(arch_params), feat
        self.frontend = LogMel(feat)
        self.backbone = build_model(arch, {**arch_params, "n_mels": feat.n_mels})

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.frontend(audio))

    @torch.no_grad()
    def score_frames(self, mel: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Probabilities for every window of a log-mel track.

        mel: (n_mels, frames). Returns (n_windows,) where window k covers frames
        [k * score_stride, k * score_stride + window_frames).
        """
        w, s = self.feat.window_frames, self.feat.score_stride
        if mel.shape[1] < w:
            raise ValueError(f"track has {mel.shape[1]} frames, fewer than one window ({w})")
        windows = mel.unfold(1, w, s).permute(1, 0, 2)  # (n_windows, n_mels, w)
        out = [torch.sigmoid(self.backbone(windows[i:i + batch_size])) for i in range(0, len(windows), batch_size)]
        return torch.cat(out)
