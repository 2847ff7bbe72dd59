"""ONNX graphs with the log-mel front end inside: the device feeds raw 16 kHz audio.

Window graph: input ``audio`` (batch, window_samples) float32 in [-1, 1] -> output ``score`` (batch,) in
[0, 1]. Streaming graph: one hop of audio + state in, score + new state out (``stream_contract``). The
front-end parameters travel in the model's metadata so a runtime (``wakeword.runtime.onnx``) can check its audio.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from wakeword.features.logmel import FeatureConfig
from wakeword.models.base import StreamingBackbone, fold_batchnorm, has_streaming_graph
from wakeword.models.kws import WakeWordModel
from wakeword.runtime.onnx import ONNX_FORMAT

logger = logging.getLogger(__name__)


class _Scorer(nn.Module):
    def __init__(self, model: WakeWordModel):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(audio))


def fuse_batchnorm(model: WakeWordModel) -> WakeWordModel:
    """A copy of ``model`` (eval mode) with every Conv2d -> BatchNorm2d pair folded into the conv.

    Same outputs (up to float rounding), fewer nodes and no BN parameters in the exported file.
    """
    import copy

    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        for i in range(len(mods) - 1):
            conv, bn = mods[i], mods[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                  conv.padding, conv.dilation, conv.groups, bias=True)
                with torch.no_grad():
                    w, b = fold_batchnorm(conv.weight, conv.bias, bn)
                    fused.weight.copy_(w)
                    fused.bias.copy_(b)
                seq[i], seq[i + 1] = fused, nn.Identity()
    return model


def compact_names(path: str | Path) -> None:
    """Rename internal tensors and nodes to short ids and drop doc strings / value_info.

    The TorchScript exporter names every tensor after its module path, which costs more bytes than
    an INT8 model's weights; inputs, outputs and metadata are kept.
    """
    import onnx

    proto = onnx.load(str(path))
    g = proto.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    mapping: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = f"t{len(mapping)}"
        return mapping[name]

    for init in g.initializer:
        init.name = short(init.name)
    for i, node in enumerate(g.node):
        node.name = f"n{i}" if "frontend" not in node.name else f"frontend{i}"
        node.doc_string = ""
        for j, x in enumerate(node.input):
            node.input[j] = short(x)
        for j, x in enumerate(node.output):
            node.output[j] = short(x)
    del g.value_info[:]
    onnx.save(proto, str(path))


def inline_initializer_identities(path: str | Path) -> None:
    """Replace ``Identity(initializer)`` nodes (the tracer's way of sharing one tensor between two
    layers) by a copy of the initializer, so every Conv weight and bias is an initializer, as the
    INT8 quantizer needs."""
    import onnx

    proto = onnx.load(str(path))
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    drop = []
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            g.initializer.append(copy)
            drop.append(node)
    for node in drop:
        g.node.remove(node)
    onnx.save(proto, str(path))


def _finish(path: Path, model: WakeWordModel, fmt: str, metadata: dict | None) -> None:
    """Shorten names and stamp the metadata a runtime checks (format, front-end parameters)."""
    import onnx

    inline_initializer_identities(path)
    compact_names(path)
    proto = onnx.load(str(path))
    meta = {"format": fmt, "features": json.dumps(model.feat.to_dict()), "arch": model.arch,
            **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))


def export_onnx(model: WakeWordModel, path: str | Path, metadata: dict | None = None, opset: int = 18) -> Path:
    """Write the window scorer as ONNX; returns the path."""

    if not has_streaming_graph(model.backbone):
        raise ValueError(f"ONNX export is for log-mel detectors and the speech_embedding model; '{model.arch}' "
                         "is a teacher on raw audio (distil a student from it instead)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fuse_batchnorm(model.cpu())
    example = torch.zeros(1, model.feat.window_samples)
    model.frontend.dft_in_graph = True  # small file: DFT matrices computed at load, not stored
    try:
        torch.onnx.export(_Scorer(model).eval(), (example,), str(path), input_names=["audio"], output_names=["score"],
                          dynamic_axes={"audio": {0: "batch"}, "score": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    finally:
        model.frontend.dft_in_graph = False
    _finish(path, model, ONNX_FORMAT, metadata)
    return path


class _StreamStep(nn.Module):
    """One streaming step: one hop of new audio + caches -> score of the newest window + new caches.

    audio: (1, chunk) samples, chunk = stride x hop_length; sample_cache: (1, n_fft - hop_length)
    samples carried over; feature_cache: (1, n_mels, window_frames - stride) frames already
    computed. Each log-mel frame is computed exactly once.
    """

    def __init__(self, model: WakeWordModel, stride: int):
        super().__init__()
        self.model = model
        f = model.feat
        self.w, self.keep = f.window_frames, f.window_frames - stride
        self.n_cache = f.n_fft - f.hop_length

    def forward(self, audio: torch.Tensor, sample_cache: torch.Tensor, feature_cache: torch.Tensor):
        x = torch.cat([sample_cache, audio], dim=1)
        mel = self.model.frontend(x)
        feats = torch.cat([feature_cache, mel], dim=2)
        score = torch.sigmoid(self.model.backbone(feats[:, :, -self.w:]))
        return score, x[:, -self.n_cache:], feats[:, :, -self.keep:]


def stream_contract(feat: FeatureConfig) -> dict:
    """How a host drives the streaming graph so its scores equal ``score_track``'s windows exactly.

    The stride is the largest divisor of the window's frame count not above ``feat.score_stride``
    (98 frames, stride 8 -> 7 = 70 ms), so every window the graph scores starts on a frame that
    ``score_track`` (with that stride) also starts a window on. The host puts the first
    ``sample_cache`` samples of the stream into the sample cache, zeros into the feature cache,
    then feeds ``chunk`` samples per call and ignores the first ``warmup_calls`` scores (windows
    that still contain the zero cache). Score i after the warm-up equals score_track's score i.
    """
    w = feat.window_frames
    stride = max(d for d in range(1, feat.score_stride + 1) if w % d == 0)
    return {"sample_cache": feat.n_fft - feat.hop_length, "feature_cache_frames": w - stride,
            "chunk": stride * feat.hop_length, "stride": stride, "warmup_calls": w // stride - 1,
            "caches": {"feature_cache": [1, feat.n_mels, w - stride]},
            "n_mels": feat.n_mels, "sample_rate": feat.sample_rate}


def model_stream_contract(model: WakeWordModel) -> dict:
    """The streaming contract of ``model``'s export: the log-mel one, or the backbone's own (raw-audio models)."""
    if model.input_kind == "mel":
        return stream_contract(model.feat)
    if not isinstance(model.backbone, StreamingBackbone):
        raise ValueError(f"'{model.arch}' reads raw audio and has no streaming graph")
    return model.backbone.stream_step()[1]


def export_streaming_onnx(model: WakeWordModel, path: str | Path, metadata: dict | None = None,
                          opset: int = 18) -> Path:
    """Write the stateful streaming graph (inputs audio, sample_cache, feature_cache)."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = fuse_batchnorm(model.cpu())
    if model.input_kind == "mel":
        c = stream_contract(model.feat)
        step: nn.Module = _StreamStep(model, c["stride"])
        ex = (torch.zeros(1, c["chunk"]), torch.zeros(1, c["sample_cache"]),
              *(torch.zeros(*shape) for shape in c["caches"].values()))
    else:
        model_stream_contract(model)  # a clear error for raw-audio models without a streaming graph
        step, c, ex = model.backbone.stream_step()
    names = list(c["caches"])
    model.frontend.dft_in_graph = True
    try:
        torch.onnx.export(step.eval(), ex, str(path), input_names=["audio", "sample_cache", *names],
                          output_names=["score", "new_sample_cache", *(f"new_{n}" for n in names)],
                          opset_version=opset, dynamo=False)
    finally:
        model.frontend.dft_in_graph = False
    _finish(path, model, ONNX_FORMAT + "-streaming", {**(metadata or {}), "stream": c})
    return path


__all__ = ["ONNX_FORMAT", "compact_names", "export_onnx", "export_streaming_onnx", "fuse_batchnorm",
           "inline_initializer_identities", "model_stream_contract", "stream_contract"]
