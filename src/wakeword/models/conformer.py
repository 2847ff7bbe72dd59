"""Conformer teacher on the project's log-mel: convolutional subsampling, then blocks of
(half feed-forward, relative-position self-attention, convolution module, half feed-forward).

Gulati et al. 2020 ("macaron" feed-forward halves). Positions are relative (Shaw et al. 2018): each
head adds a learned embedding of the clipped offset j - i to its keys, so a shifted utterance gives
the same attention pattern, which matters when the phrase can sit anywhere in the window.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ConformerConfig:
    n_mels: int = 40  # log-mel bins of the input
    d_model: int = 96  # attention width
    n_blocks: int = 4  # conformer blocks
    n_heads: int = 4  # attention heads (d_model must divide)
    ff_mult: int = 4  # feed-forward hidden = ff_mult x d_model
    conv_kernel: int = 15  # depthwise kernel of the convolution module, in subsampled frames (40 ms each)
    subsample_channels: int = 64  # channels of the two stride-2 subsampling convs (10 ms -> 40 ms frames)
    max_rel_pos: int = 32  # offsets beyond this many subsampled frames share one embedding
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, d: dict) -> ConformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"preset"}
        if unknown:
            raise ValueError(f"unknown conformer parameters: {sorted(unknown)}; known: {sorted(known)}")
        if d.get("preset") and d["preset"] not in PRESETS:
            raise ValueError(f"unknown conformer preset '{d['preset']}'; known: {sorted(PRESETS)}")
        base = dict(PRESETS[d["preset"]]) if d.get("preset") else {}
        base.update({k: v for k, v in d.items() if k in known})
        return cls(**base)


PRESETS: dict[str, dict] = {
    "tiny": {"d_model": 32, "n_blocks": 2, "n_heads": 2, "ff_mult": 2, "subsample_channels": 16},  # tests
    "small": {"d_model": 96, "n_blocks": 4, "n_heads": 4},  # ~0.9 M parameters, trains on a CPU
    "base": {"d_model": 144, "n_blocks": 16, "n_heads": 4, "subsample_channels": 144},  # Conformer-S size
}


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d * mult), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(d * mult, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RelPosSelfAttention(nn.Module):
    """x: (batch, time, d) -> (batch, time, d); scores_ij = q_i.(k_j + r_{clip(j-i)}) / sqrt(d_head)."""

    def __init__(self, d: int, heads: int, max_rel: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"d_model {d} is not divisible by n_heads {heads}")
        self.h, self.dh, self.max_rel = heads, d // heads, max_rel
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.rel = nn.Embedding(2 * max_rel + 1, self.dh)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        pos = torch.arange(t, device=x.device)
        offsets = (pos[None, :] - pos[:, None]).clamp(-self.max_rel, self.max_rel) + self.max_rel
        r = self.rel(offsets)  # (t, t, dh)
        scores = (q @ k.transpose(-1, -2) + torch.einsum("bhid,ijd->bhij", q, r)) / math.sqrt(self.dh)
        att = self.drop(scores.softmax(dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.drop(self.out(y))


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.bn = nn.BatchNorm1d(d)
        self.pw2 = nn.Conv1d(d, d, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(self.norm(x).transpose(1, 2)), dim=1)
        y = self.pw2(F.silu(self.bn(self.dw(y))))
        return self.drop(y.transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, c: ConformerConfig):
        super().__init__()
        self.ff1 = FeedForward(c.d_model, c.ff_mult, c.dropout)
        self.att = RelPosSelfAttention(c.d_model, c.n_heads, c.max_rel_pos, c.dropout)
        self.conv = ConvModule(c.d_model, c.conv_kernel, c.dropout)
        self.ff2 = FeedForward(c.d_model, c.ff_mult, c.dropout)
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.att(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    """Teacher backbone. forward_features(mel: (batch, n_mels, frames)) -> (logits (batch,),
    [block output (batch, d_model, frames / 4)] per block)."""

    input_kind = "mel"

    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        self.cfg = cfg
        self.resolved_params = asdict(cfg)
        ch = cfg.subsample_channels
        self.input_norm = nn.BatchNorm2d(1)
        self.subsample = nn.Sequential(nn.Conv2d(1, ch, 3, stride=2, padding=1), nn.SiLU(),
                                       nn.Conv2d(ch, ch, 3, stride=2, padding=1), nn.SiLU())
        f_out = (cfg.n_mels + 1) // 2
        f_out = (f_out + 1) // 2
        self.proj = nn.Linear(ch * f_out, cfg.d_model)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.n_blocks))
        self.pool = nn.Linear(cfg.d_model, 1)  # attention pooling over time
        self.classifier = nn.Linear(cfg.d_model, 1)
        self.feature_dims = [cfg.d_model] * cfg.n_blocks

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() != 3 or x.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected (batch, {self.cfg.n_mels}, frames), got {tuple(x.shape)}")
        h = self.subsample(self.input_norm(x.unsqueeze(1)))  # (B, ch, mel/4, frames/4)
        b, c, f, t = h.shape
        h = self.proj(h.permute(0, 3, 1, 2).reshape(b, t, c * f))  # (B, T, d)
        feats = []
        for block in self.blocks:
            h = block(h)
            feats.append(h.transpose(1, 2))
        w = self.pool(h).softmax(dim=1)  # (B, T, 1)
        return self.classifier((w * h).sum(dim=1)).squeeze(1), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]
