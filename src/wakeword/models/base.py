"""The one interface every backbone (the student and both teachers) satisfies."""
from __future__ import annotations

from typing import Protocol

import torch


class Backbone(Protocol):
    """A detector body behind the front end.

    ``input_kind``: "mel" (input (batch, n_mels, frames) log-mel from the one LogMel front end) or
    "audio" (input (batch, 1, samples) at 16 kHz; the backbone normalises it).
    ``feature_dims``: channels of each exposed intermediate feature, in the order returned.
    ``resolved_params`` (optional): parameters that rebuild this exact network (stored in checkpoints).
    """

    input_kind: str
    feature_dims: list[int]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (logits (batch,), features: each (batch, channels, time) or (batch, channels, freq, time))."""
        ...

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


def time_series(feat: torch.Tensor) -> torch.Tensor:
    """Any exposed feature as (batch, channels, time): a frequency axis is averaged out."""
    if feat.dim() == 4:
        return feat.mean(dim=2)
    if feat.dim() != 3:
        raise ValueError(f"expected a (batch, channels, [freq,] time) feature, got {tuple(feat.shape)}")
    return feat
