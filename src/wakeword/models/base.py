"""The one interface every backbone (the student and both teachers) satisfies."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

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


@runtime_checkable
class StreamingBackbone(Protocol):
    """A raw-audio backbone with its own streaming graph (speech_embedding): one hop of audio + caches in, the
    score of the newest window + new caches out. A log-mel backbone needs none: the export builds its step."""

    def stream_step(self) -> tuple[torch.nn.Module, dict, tuple[torch.Tensor, ...]]:
        """-> (step module, contract (sample_cache, chunk, warmup_calls, caches, sample_rate, ...), example inputs)."""
        ...


def has_streaming_graph(backbone: object) -> bool:
    """Whether a model with this backbone can be streamed and exported as a streaming graph."""
    return getattr(backbone, "input_kind", "mel") == "mel" or isinstance(backbone, StreamingBackbone)


def time_series(feat: torch.Tensor) -> torch.Tensor:
    """Any exposed feature as (batch, channels, time): a frequency axis is averaged out."""
    if feat.dim() == 4:
        return feat.mean(dim=2)
    if feat.dim() != 3:
        raise ValueError(f"expected a (batch, channels, [freq,] time) feature, got {tuple(feat.shape)}")
    return feat


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None,
                   bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a conv/linear followed by ``bn`` in eval mode, as one layer (differentiable:
    the ONNX export folds with it, and QAT trains through it so it sees the weights the export writes).
    weight: (out, ...), bias: (out,) or None."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    b = ((bias if bias is not None else torch.zeros_like(bn.running_mean)) - bn.running_mean) * scale + bn.bias
    return w, b
