"""SpecAugment for ~1 s utterances: per-sample masks whose widths are fractions of the clip.

Masks are drawn independently for every sample (never once per batch), and the total masked time
is capped as a fraction of the clip so a mask can never erase the whole wake word.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SpecAugmentConfig:
    time_masks: int = 2  # time masks per sample
    time_mask_frac: float = 0.08  # max width of one time mask, as a fraction of the frames
    max_time_frac: float = 0.15  # cap on the total masked time per sample
    freq_masks: int = 2  # frequency masks per sample
    freq_mask_frac: float = 0.12  # max width of one frequency mask, as a fraction of the mel bands
    prob: float = 0.8  # probability that a sample is augmented at all
    warp: float = 0.0  # max relative stretch of the mel axis per sample (0.1: x0.9..x1.1), a cheap
    #                    vocal-tract-length perturbation that moves formants without changing tempo


class SpecAugment(nn.Module):
    """forward(x: (batch, n_mels, frames), generator) -> same shape; masked cells get the sample mean."""

    def __init__(self, cfg: SpecAugmentConfig = SpecAugmentConfig()):
        super().__init__()
        self.cfg = cfg

    def masks(self, batch: int, n_mels: int, frames: int, generator: torch.Generator | None = None,
              device: torch.device | None = None) -> torch.Tensor:
        """Boolean mask (batch, n_mels, frames), True where masked; drawn per sample."""
        c = self.cfg
        g = generator
        mask = torch.zeros(batch, n_mels, frames, dtype=torch.bool, device=device)
        active = torch.rand(batch, generator=g) < c.prob
        t_max = max(1, int(c.time_mask_frac * frames))
        f_max = max(1, int(c.freq_mask_frac * n_mels))
        budget = int(c.max_time_frac * frames)
        f_idx = torch.arange(n_mels, device=device)
        t_idx = torch.arange(frames, device=device)
        for b in range(batch):
            if not active[b]:
                continue
            used = 0
            for _ in range(c.time_masks):
                w = int(torch.randint(0, t_max + 1, (1,), generator=g))
                w = min(w, budget - used)
                if w <= 0:
                    continue
                s = int(torch.randint(0, frames - w + 1, (1,), generator=g))
                mask[b, :, (t_idx >= s) & (t_idx < s + w)] = True
                used += w
            for _ in range(c.freq_masks):
                w = int(torch.randint(0, f_max + 1, (1,), generator=g))
                if w == 0:
                    continue
                s = int(torch.randint(0, n_mels - w + 1, (1,), generator=g))
                mask[b, (f_idx >= s) & (f_idx < s + w), :] = True
        return mask

    def warp_mel(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stretch each sample's mel axis by its own factor in [1 - warp, 1 + warp] (linear interpolation)."""
        b, n_mels, _ = x.shape
        alpha = 1 + (torch.rand(b, generator=generator) * 2 - 1).to(x.device) * self.cfg.warp  # (B,)
        src = torch.arange(n_mels, device=x.device, dtype=x.dtype)[None, :] / alpha[:, None]  # (B, n_mels)
        src = src.clamp(0, n_mels - 1)
        lo = src.floor().long()
        hi = (lo + 1).clamp(max=n_mels - 1)
        w = (src - lo.to(x.dtype))[:, :, None]
        def take(idx):
            return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[2]))
        return take(lo) * (1 - w) + take(hi) * w

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        if self.cfg.warp > 0:
            x = self.warp_mel(x, generator)
        m = self.masks(x.shape[0], x.shape[1], x.shape[2], generator, x.device)
        fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
        return torch.where(m, fill, x)
