"""name -> builder registry, and size/cost counters shared by reports and HPO."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from wakeword.models.mobilenetv3 import MobileNetV3, StudentConfig

_BUILDERS: dict[str, Callable[[dict], nn.Module]] = {}


def register(name: str, builder: Callable[[dict], nn.Module]) -> None:
    _BUILDERS[name] = builder


def build_model(name: str, params: dict) -> nn.Module:
    """Build a registered architecture from its (serialisable) parameters."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown model '{name}'; known: {sorted(_BUILDERS)}")
    return _BUILDERS[name](params)


def _conformer(p: dict) -> nn.Module:
    from wakeword.models.conformer import Conformer, ConformerConfig

    return Conformer(ConformerConfig.from_dict(p))


def _wav2vec2(p: dict) -> nn.Module:
    from wakeword.models.wav2vec2 import Wav2Vec2Teacher  # imports transformers: only when asked for

    return Wav2Vec2Teacher(p)


def _speech_embedding(p: dict) -> nn.Module:
    from wakeword.models.speech_embedding import SpeechEmbeddingTeacher

    return SpeechEmbeddingTeacher(p)


def _mixednet(p: dict) -> nn.Module:
    from wakeword.models.mixednet import MixedNet, MixedNetConfig

    return MixedNet(MixedNetConfig.from_dict(p))


register("mobilenetv3", lambda p: MobileNetV3(StudentConfig.from_dict(p)))
register("mixednet", _mixednet)  # the microWakeWord-style streaming student (ESPHome export)
register("conformer", _conformer)
register("wav2vec2", _wav2vec2)
register("speech_embedding", _speech_embedding)
TEACHERS = ("wav2vec2", "conformer", "speech_embedding")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of one forward pass on ``example`` (conv and linear layers; attention's
    score and mixing products are not counted). A tensor is a batch (its first item is used); a tuple is
    the inputs of one call (a streaming step's audio and caches)."""
    total = 0

    def conv_hook(m: nn.Conv1d | nn.Conv2d, _inp, out):
        nonlocal total
        k = int(np.prod(m.kernel_size))
        total += out.numel() * (m.in_channels // m.groups) * k  # the whole output: one example goes in, but a
        # layer may see it folded into several items (speech_embedding: one per 80 ms embedding)

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(*example) if isinstance(example, tuple) else model(example[:1])
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total
