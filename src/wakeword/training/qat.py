"""Quantization-aware fine-tuning (QAT) of the MobileNetV3 student: fake INT8 as the export quantizes it.

``wakeword export --int8`` quantizes with ONNX Runtime's static QDQ recipe (``export.quantize_int8``).
This module imitates that recipe in the forward pass so a short fine-tune (``TrainConfig.qat``, run
through the one ``fit()``) can learn weights that survive it:

* the same layers: every Conv / Linear of the backbone in execution order (the order of the exported
  graph's Conv / Gemm nodes), except the first and the last (``keep_ends_float``, as ``quantize_int8``);
* weights: per-output-channel symmetric int8 with ORT's reduced range [-64, 64] (``INT8_REDUCE_RANGE``:
  no int16 saturation on CPUs without VNNI), scale = max|w| / 64, computed from the
  BatchNorm-folded weights, since the export folds BatchNorm into the conv before it quantizes;
* activations: one per-tensor affine 8-bit grid (256 levels, range widened to include 0) for every
  tensor that enters or leaves a quantized layer, and every consumer of that tensor sees the
  quantized value (ORT rewires all consumers to the DequantizeLinear output: the residual adds read
  the quantized block input). The QDQ export stores int8 with a zero point, the QOperator one uint8;
  both are the same 256-point grid. Ranges start from the min / max over calibration windows (ORT's
  MinMax calibrator) and follow an exponential moving average of each batch's min / max in training;
* straight-through estimator: ``torch.fake_quantize_per_*_affine`` pass the gradient inside the range.

Not imitated: int32 bias rounding (scale input_scale x weight_scale: far below the weight and activation
steps) and the rounding inside ORT's integer kernels.

BatchNorm is frozen (running statistics, never batch statistics) for the whole fine-tune, and folded into
its conv in the forward pass (gamma and beta still learn through the fold). Why: the export bakes the
running statistics into the conv weights, so the weight grid QAT must train against is the folded one;
batch statistics of 64 augmented windows would show the fine-tune a different network from the one the
device runs, and a few hundred low-lr steps do not need the statistics to move.

``strip_qat`` returns the ordinary float model (original conv and BatchNorm modules with the fine-tuned
values): checkpoints, ``export_onnx`` and ``quantize_int8`` handle it unchanged.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wakeword.models.base import fold_batchnorm
from wakeword.models.kws import WakeWordModel

__all__ = ["ActFakeQuant", "QuantLayer", "calibrate", "calibration_windows_from", "is_qat", "load_observer_state",
           "observer_state", "prepare_qat", "strip_qat"]

WEIGHT_QRANGE = (-64, 64)  # ORT's reduced-range symmetric int8 weights (zero point 0), as the export writes
ACT_QRANGE = (-128, 127)  # activations: 256 levels with a zero point (int8 QDQ; uint8 is the same grid)
EMA = 0.01  # weight of each training batch's min / max in the running activation range


class ActFakeQuant(nn.Module):
    """Per-tensor affine fake quantization of one activation tensor, with its range observer.

    Modes: calibrating (``calibrate``): pass through and widen the range to the min / max seen (ORT's
    MinMax calibration of the float model); training: moving-average range, then fake-quantize;
    eval: fake-quantize with the frozen range.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))
        self.calibrating = False

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale float32, zero point int32) as ORT's ``compute_scale_zp`` (range widened to include 0)."""
        qmin, qmax = ACT_QRANGE
        rmin = torch.clamp(self.min_val.double(), max=0.0)
        rmax = torch.clamp(self.max_val.double(), min=0.0)
        scale = (rmax - rmin) / (qmax - qmin)
        if not torch.isfinite(scale) or scale < torch.finfo(torch.float32).tiny:
            return torch.ones((), device=scale.device), torch.zeros((), dtype=torch.int32, device=scale.device)
        zp = torch.round(qmin - rmin / scale).clamp(qmin, qmax)
        return scale.float(), zp.to(torch.int32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            with torch.no_grad():
                self.min_val.copy_(torch.minimum(self.min_val, x.min()))
                self.max_val.copy_(torch.maximum(self.max_val, x.max()))
            return x
        if self.training:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                if torch.isfinite(self.min_val):
                    lo, hi = self.min_val + EMA * (lo - self.min_val), self.max_val + EMA * (hi - self.max_val)
                self.min_val.copy_(lo)
                self.max_val.copy_(hi)
        scale, zp = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, *ACT_QRANGE)


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 (axis 0), scale = max|w_c| / 64 from the current weights."""
    qmin, qmax = WEIGHT_QRANGE
    scale = w.detach().abs().flatten(1).amax(1).double() / qmax
    scale = torch.where(scale < torch.finfo(torch.float32).tiny, torch.ones_like(scale), scale).float()
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, qmin, qmax)


class QuantLayer(nn.Module):
    """A Conv2d or Linear that the export quantizes, with its BatchNorm (if any) folded in.

    Holds the original modules (same Parameter objects: an optimizer built before ``prepare_qat`` keeps
    working). ``act_in`` is None when the input is already quantized upstream (it is another quantized
    layer's output, or a residual block's quantized input).
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | None, quant_input: bool):
        super().__init__()
        self.layer, self.bn = layer, bn
        self.act_in = ActFakeQuant() if quant_input else None
        self.act_out = ActFakeQuant()

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) with the frozen BatchNorm folded in, as the export folds them."""
        if self.bn is None:
            return self.layer.weight, self.layer.bias
        return fold_batchnorm(self.layer.weight, self.layer.bias, self.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_in is not None:
            x = self.act_in(x)
        w, b = self.folded()
        if not self.act_out.calibrating:  # ORT calibrates the float network
            w = _fake_quant_weight(w)
        y = self.layer._conv_forward(x, w, b) if isinstance(self.layer, nn.Conv2d) else F.linear(x, w, b)
        return self.act_out(y)


class _QuantInput(nn.Module):
    """Quantizes a module's input before it runs: a residual block whose input feeds both its first
    quantized layer and the skip connection (ORT quantizes the tensor, so the add reads it quantized)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.act = inner, ActFakeQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.act(x))


class _FrozenBatchNorm(nn.Module):
    """A BatchNorm2d that always normalises with its running statistics (gamma and beta still learn)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


_WRAPPERS = (QuantLayer, _QuantInput, _FrozenBatchNorm)


def is_qat(model: nn.Module) -> bool:
    return any(isinstance(m, _WRAPPERS) for m in model.modules())


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _traced_layers(backbone: nn.Module, n_mels: int, frames: int):
    """One float forward: the Conv2d / Linear names in execution order (the exported graph's Conv /
    Gemm order), every layer's and BatchNorm's input and output tensor, and the input of each residual
    block (read twice: by the block and by the skip connection)."""
    from wakeword.models.mobilenetv3 import InvertedResidual

    names = {id(m): n for n, m in backbone.named_modules()}
    order: list[str] = []
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    block_inputs: dict[str, torch.Tensor] = {}

    def record(mod, args, out):
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            order.append(names[id(mod)])
        inputs[names[id(mod)]], outputs[names[id(mod)]] = args[0], out

    hooks = []
    for m in backbone.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            hooks.append(m.register_forward_hook(record))
        elif isinstance(m, InvertedResidual) and m.residual:
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args: block_inputs.__setitem__(names[id(mod)], args[0])))
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            p = next(backbone.parameters())
            backbone(torch.zeros(1, n_mels, frames, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    return order, inputs, outputs, block_inputs


def _following_bn(modules: dict[str, nn.Module], name: str) -> str | None:
    """The BatchNorm2d right after conv ``name`` in its Sequential (what ``export.fuse_batchnorm`` folds)."""
    parent, _, idx = name.rpartition(".")
    seq = modules.get(parent)
    if not (isinstance(seq, nn.Sequential) and idx.isdigit() and isinstance(modules[name], nn.Conv2d)):
        return None
    nxt = int(idx) + 1
    return f"{parent}.{nxt}" if nxt < len(seq) and isinstance(seq[nxt], nn.BatchNorm2d) else None


def prepare_qat(model: WakeWordModel, calibration: torch.Tensor | None = None, keep_ends_float: bool = True,
                observers: dict | None = None, batch_size: int = 64) -> WakeWordModel:
    """Insert fake quantization into ``model`` (in place; returns it) and freeze its BatchNorm.

    calibration: (n, window_samples) audio windows to set the initial activation ranges (the export's
    calibration draw, or training windows); observers: a saved ``observer_state`` instead (resume).
    keep_ends_float mirrors ``export.quantize_int8``: the first and last conv / linear stay float.
    """
    if model.arch != "mobilenetv3" or model.input_kind != "mel":
        raise ValueError(f"quantization-aware training is for the MobileNetV3 student, not '{model.arch}'")
    if is_qat(model):
        raise ValueError("the model is already prepared for QAT")
    bb = model.backbone
    order, inputs, outputs, block_inputs = _traced_layers(bb, model.feat.n_mels, model.feat.window_frames)
    modules = dict(bb.named_modules())
    quantized = order[1:-1] if keep_ends_float else list(order)
    bns = {n: _following_bn(modules, n) for n in quantized}
    # Each quantized tensor gets one fake quantizer: at its producer when a quantized layer (with its
    # folded BatchNorm) makes it, else before its first quantized reader; a residual block's input is
    # quantized before the block so the skip connection reads the same values.
    produced = {id(outputs[bns[n] or n]) for n in quantized}
    wrap_blocks = [b for b, x in block_inputs.items()
                   if id(x) not in produced and any(inputs[n] is x for n in quantized)]
    block_fed = {id(block_inputs[b]) for b in wrap_blocks}
    for name in quantized:
        bn = modules[bns[name]] if bns[name] else None
        if bns[name]:
            _set(bb, bns[name], nn.Identity())
        x = inputs[name]
        _set(bb, name, QuantLayer(modules[name], bn, quant_input=id(x) not in produced and id(x) not in block_fed))
    folded = {b for b in bns.values() if b}
    for name, m in modules.items():
        if isinstance(m, nn.BatchNorm2d) and name not in folded:
            _set(bb, name, _FrozenBatchNorm(m))
    for b in wrap_blocks:
        _set(bb, b, _QuantInput(modules[b]))
    if observers is not None:
        load_observer_state(model, observers)
    elif calibration is not None:
        calibrate(model, calibration, batch_size)
    return model


@torch.no_grad()
def calibrate(model: WakeWordModel, windows: torch.Tensor | np.ndarray, batch_size: int = 64) -> None:
    """Set every activation range to the min / max over ``windows`` ((n, window_samples) audio) seen by
    the float network (fake quantization off), as ORT's MinMax calibrator does."""
    fqs = [m for m in model.modules() if isinstance(m, ActFakeQuant)]
    device = next(model.parameters()).device
    windows = torch.as_tensor(windows, dtype=torch.float32)
    was_training = model.training
    model.eval()
    for m in fqs:
        m.min_val.fill_(float("inf"))
        m.max_val.fill_(float("-inf"))
        m.calibrating = True
    try:
        for i in range(0, len(windows), batch_size):
            model(windows[i:i + batch_size].to(device))
    finally:
        for m in fqs:
            m.calibrating = False
        model.train(was_training)


def calibration_windows_from(dataset, n: int = 256, seed: int = 0) -> torch.Tensor:
    """``n`` windows of a training dataset (item -> (audio, ...)), drawn uniformly like the export's."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    return torch.stack([dataset[int(i)][0] for i in sorted(idx)])


def observer_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The activation ranges (min_val / max_val of every fake quantizer), for a resumable checkpoint."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
            if k.endswith((".min_val", ".max_val"))}


def load_observer_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Restore ``observer_state`` into a model prepared the same way."""
    own = observer_state(model)
    if set(own) != set(state):
        raise ValueError("saved QAT activation ranges do not match this model's quantized layers")
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for k, v in state.items():
            buffers[k].copy_(v)


def strip_qat(model: WakeWordModel) -> WakeWordModel:
    """An ordinary float copy of a QAT-prepared model (original modules, fine-tuned values).

    ``model`` itself is left prepared. Its float forward differs from the fake-quant one by the
    quantization error only; export then folds and quantizes it as any checkpoint.
    """
    out = copy.deepcopy(model)
    # Deepest first, so the paths of enclosing wrappers stay valid while their insides are restored.
    wrapped = sorted(((n, m) for n, m in out.named_modules() if isinstance(m, _WRAPPERS)),
                     key=lambda nm: -nm[0].count("."))
    for name, m in wrapped:
        if isinstance(m, QuantLayer):
            _set(out, name, m.layer)
            if m.bn is not None:
                parent, _, idx = name.rpartition(".")
                _set(out, f"{parent}.{int(idx) + 1}", m.bn)
        elif isinstance(m, _QuantInput):
            _set(out, name, m.inner)
        else:
            _set(out, name, m.bn)
    return out
