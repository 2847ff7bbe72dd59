"""MobileNetV3 student for log-mel keyword spotting (inverted residuals, squeeze-excite, hard-swish).

Written here (no torchvision) with width, depth, kernel and SE knobs. Input is the log-mel of one
classifier window; output is one logit per window (wake word vs anything else).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class StageSpec:
    out_channels: int  # channels at width 1.0
    expansion: float  # hidden channels = expansion x input channels
    kernel: int  # depthwise kernel (square)
    stride: int  # stride of the first block of the stage
    se: bool  # squeeze-excite in this stage
    hswish: bool  # hard-swish (True) or ReLU (False)
    blocks: int  # blocks at depth 1.0


DEFAULT_STAGES: tuple[StageSpec, ...] = (
    StageSpec(16, 1.0, 3, 2, True, False, 1),
    StageSpec(24, 3.0, 3, 2, False, False, 2),
    StageSpec(40, 3.0, 5, 2, True, True, 2),
    StageSpec(64, 3.0, 5, 2, True, True, 2),
)


WINDOW_NORMS = ("none", "level", "cmn")


def normalise_window(x: torch.Tensor, how: str) -> torch.Tensor:
    """Remove what a microphone's gain or colouring adds to a log-mel window (batch, n_mels, frames).

    In the log domain a gain is a constant added to every cell and a fixed channel response (mic,
    room, phone line) a constant per band. "level" subtracts the window's mean (the output does not
    depend on the input gain); "cmn" subtracts each band's mean over the window's frames (cepstral
    mean normalisation done on mel bands: no dependence on gain or on a fixed channel response).
    Computed from the window alone, so the streaming graph, which scores whole windows, is unchanged.
    """
    if how == "none":
        return x
    if how == "level":
        return x - x.mean(dim=(1, 2), keepdim=True)
    if how == "cmn":
        return x - x.mean(dim=2, keepdim=True)
    raise ValueError(f"window_norm must be one of {WINDOW_NORMS}, got {how!r}")


@dataclass(frozen=True)
class StudentConfig:
    n_mels: int = 40  # input mel bands (must equal the front end's)
    width: float = 1.0  # channel multiplier for every stage
    depth: float = 1.0  # block-count multiplier per stage (at least one block each)
    kernel: int | None = None  # override every depthwise kernel (None: per-stage default)
    se: bool = True  # allow squeeze-excite (stages without SE stay without)
    stem_channels: int = 16  # channels of the first 3x3 conv at width 1.0
    head_channels: int = 128  # channels of the last 1x1 conv before pooling
    dropout: float = 0.2  # before the classifier
    stages: tuple[StageSpec, ...] = field(default=DEFAULT_STAGES)
    # Per-window normalisation of the log-mel input (see ``normalise_window``): "none", "level" (gain
    # invariance) or "cmn" (per-band mean removal: gain and fixed channel colouring).
    window_norm: str = "none"

    def __post_init__(self):
        if self.window_norm not in WINDOW_NORMS:
            raise ValueError(f"window_norm must be one of {WINDOW_NORMS}, got {self.window_norm!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        d = dict(d)
        if "stages" in d:
            d["stages"] = tuple(StageSpec(**s) for s in d["stages"])
        return cls(**d)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = _make_divisible(channels / reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, se: bool, hswish: bool):
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = []
        if hidden != cin:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act()]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            act(),
        ]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    """forward(x: (batch, n_mels, frames) log-mel) -> (batch,) logits.

    ``forward_features`` also returns each stage's output, (batch, channels, mel', frames'),
    for feature-matching distillation.
    """

    input_kind = "mel"

    def __init__(self, cfg: StudentConfig = StudentConfig()):
        super().__init__()
        self.cfg = cfg
        self.input_norm = nn.BatchNorm2d(1)  # learns the log-mel offset/scale; no per-utterance stats
        stem = _make_divisible(cfg.stem_channels * cfg.width)
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.Hardswish())
        cin = stem
        self.stages = nn.ModuleList()
        for spec in cfg.stages:
            cout = _make_divisible(spec.out_channels * cfg.width)
            kernel = cfg.kernel or spec.kernel
            n = max(1, round(spec.blocks * cfg.depth))
            blocks = []
            for i in range(n):
                hidden = _make_divisible(cin * spec.expansion)
                blocks.append(InvertedResidual(cin, hidden, cout, kernel, spec.stride if i == 0 else 1,
                                               spec.se and cfg.se, spec.hswish))
                cin = cout
            self.stages.append(nn.Sequential(*blocks))
        head = _make_divisible(cfg.head_channels * max(1.0, cfg.width))
        self.head = nn.Sequential(nn.Conv2d(cin, head, 1, bias=False), nn.BatchNorm2d(head), nn.Hardswish())
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(head, 1)
        self.stage_channels = [s[-1].block[-1].num_features for s in self.stages]  # type: ignore[index]
        self.feature_dims = self.stage_channels
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() != 3 or x.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected (batch, {self.cfg.n_mels}, frames), got {tuple(x.shape)}")
        x = normalise_window(x, self.cfg.window_norm)
        h = self.stem(self.input_norm(x.unsqueeze(1)))
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        h = self.head(h).mean(dim=(2, 3))
        return self.classifier(self.dropout(h)).squeeze(1), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]
