"""A microWakeWord-style streaming student: causal MixConv blocks on the 40 micro features (features/micro.py).

The network is fully convolutional in time with no padding ("valid"), so it has a finite receptive field and
one window of exactly ``window_frames`` frames gives exactly one logit. That makes the window model (what
``fit()`` trains and ``score_frames`` slides) and the streaming model (what ESPHome runs: 3 new frames per
call, each convolution keeping the inputs it still needs in a ring buffer) the same function: after its first
``window_frames`` frames the streaming model's output of a call equals the window model's on the last
``window_frames`` frames (mww_export.py builds that streaming graph from these weights).

Layers (time runs at 10 ms per frame in, 30 ms per step after the first convolution):

- input BatchNorm per band (learns the features' offset and scale; folded into the first convolution on export)
- first convolution: kernel = stride = ``stride`` frames (3: one step per 30 ms call, no state needed), ReLU
- blocks: a MixConv (depthwise, channel groups with different kernel lengths, each group's taps aligned to the
  newest step), a pointwise convolution, BatchNorm, ReLU, and a residual from the block's newest input step
  where the channels match
- the last block's single remaining step -> dropout -> linear -> one logit

Only operations ESPHome's op resolver registers are needed on export (CONV_2D, DEPTHWISE_CONV_2D, ADD,
FULLY_CONNECTED, LOGISTIC, and the variable ops for the ring buffers).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from wakeword.features.logmel import FeatureConfig
from wakeword.features.micro import MICRO_FEATURES


@dataclass(frozen=True)
class MixedNetConfig:
    n_mels: int = 40  # input features per frame (the micro front end's 40)
    stride: int = 3  # frames per streaming call (30 ms); also the first convolution's kernel and stride
    first_channels: int = 32  # channels of the first convolution
    kernels: tuple[tuple[int, ...], ...] = ((5,), (7, 11), (9, 15), (17,))  # per block: the MixConv's kernel
    #   lengths in 30 ms steps (channels split evenly between them); the longest sets the block's history
    channels: tuple[int, ...] = (64, 64, 64, 64)  # per block: output channels of the pointwise convolution
    residual: bool = True  # add the block's newest input step to its output where the channels match
    dropout: float = 0.2  # before the classifier

    def __post_init__(self) -> None:
        if len(self.kernels) != len(self.channels) or not self.kernels:
            raise ValueError("kernels and channels need one entry per block (at least one block)")
        if any(k < 1 for ks in self.kernels for k in ks) or any(not ks for ks in self.kernels):
            raise ValueError(f"every block needs kernel lengths >= 1, got {self.kernels}")

    @property
    def window_steps(self) -> int:
        """30 ms steps one logit sees: 1 + the history of every block."""
        return 1 + sum(max(ks) - 1 for ks in self.kernels)

    @property
    def window_frames(self) -> int:
        """10 ms frames one logit sees (135 by default: 1.35 s of features)."""
        return self.stride * self.window_steps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kernels"] = [list(k) for k in self.kernels]
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MixedNetConfig:
        d = dict(d)
        if "kernels" in d:
            d["kernels"] = tuple(tuple(int(k) for k in ks) for ks in d["kernels"])
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


def window_seconds(cfg: MixedNetConfig, n_fft: int, hop: int, sample_rate: int) -> float:
    """Seconds of audio whose frames fill exactly one window of ``cfg``."""
    return ((cfg.window_frames - 1) * hop + n_fft) / sample_rate


def mixednet_features(params: dict, features: dict) -> FeatureConfig:
    """The front end of a MixedNet with ``params``: the micro front end unless ``features`` asks for
    "logmel"; one window holds exactly the network's receptive field and scores come once per streaming call."""
    cfg = MixedNetConfig.from_dict(params)
    base = {**features, **(MICRO_FEATURES if features.get("frontend", "micro") == "micro" else {})}
    feat = FeatureConfig(**{k: v for k, v in base.items() if k not in ("window_s", "score_stride")})
    window_s = window_seconds(cfg, feat.n_fft, feat.hop_length, feat.sample_rate)
    return FeatureConfig(**{**feat.to_dict(), "window_s": window_s, "score_stride": cfg.stride})


class MixConv(nn.Module):
    """Depthwise convolution in time whose channel groups use different kernel lengths.

    Stored as one depthwise kernel of the longest length; a fixed mask zeroes the oldest taps of the shorter
    groups, so every group looks at the newest steps (causal) and all groups shorten the sequence alike.
    forward(x: (batch, channels, steps)) -> (batch, channels, steps - max(kernels) + 1)."""

    def __init__(self, channels: int, kernels: tuple[int, ...]):
        super().__init__()
        self.kmax = max(kernels)
        self.conv = nn.Conv1d(channels, channels, self.kmax, groups=channels, bias=False)
        mask = torch.zeros(channels, 1, self.kmax)
        bounds = [round(i * channels / len(kernels)) for i in range(len(kernels) + 1)]
        for k, lo, hi in zip(kernels, bounds[:-1], bounds[1:]):
            mask[lo:hi, :, self.kmax - k:] = 1.0
        self.register_buffer("mask", mask, persistent=False)

    def weight(self) -> torch.Tensor:
        """(channels, 1, kmax): the kernel as applied (masked taps are zero)."""
        return self.conv.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv1d(x, self.weight(), groups=self.conv.groups)


class MixedBlock(nn.Module):
    """MixConv -> pointwise -> BatchNorm -> ReLU (+ the newest input step)."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...], residual: bool):
        super().__init__()
        self.mix = MixConv(cin, kernels)
        self.pointwise = nn.Conv1d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm1d(cout)
        self.residual = residual and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.pointwise(self.mix(x))))
        return y + x[..., self.mix.kmax - 1:] if self.residual else y


class MixedNet(nn.Module):
    """forward(x: (batch, n_mels, frames) micro features) -> (batch,) logits; frames must be ``window_frames``
    (one window). ``track_logits`` slides it over any number of frames in one pass."""

    input_kind = "mel"

    def __init__(self, cfg: MixedNetConfig = MixedNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.input_norm = nn.BatchNorm1d(cfg.n_mels)
        self.first = nn.Conv1d(cfg.n_mels, cfg.first_channels, cfg.stride, stride=cfg.stride, bias=False)
        self.first_bn = nn.BatchNorm1d(cfg.first_channels)
        blocks, cin = [], cfg.first_channels
        for ks, cout in zip(cfg.kernels, cfg.channels):
            blocks.append(MixedBlock(cin, cout, ks, cfg.residual))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cin, 1)
        self.feature_dims = list(cfg.channels)
        self.resolved_params = cfg.to_dict()

    def _body(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() != 3 or x.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected (batch, {self.cfg.n_mels}, frames), got {tuple(x.shape)}")
        h = torch.relu(self.first_bn(self.first(self.input_norm(x))))
        feats = []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        return h, feats

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (logits (batch,), each block's output (batch, channels, steps))."""
        if x.shape[-1] != self.cfg.window_frames:
            raise ValueError(f"one window is {self.cfg.window_frames} frames, got {x.shape[-1]}")
        h, feats = self._body(x)
        return self.classifier(self.dropout(h[..., -1])).squeeze(1), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def track_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, n_mels, frames >= window_frames) -> (batch, windows) logits, window k on frames
        [stride * k, stride * k + window_frames): ``forward`` of every window, computed once for all."""
        h, _ = self._body(x)
        return self.classifier(self.dropout(h.transpose(1, 2))).squeeze(2)


__all__ = ["MixedNet", "MixedNetConfig", "mixednet_features", "window_seconds"]
