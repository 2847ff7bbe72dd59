"""Static INT8 quantization of the exported graphs, calibrated on augmented training windows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wakeword.export.graph import compact_names
from wakeword.features.logmel import FeatureConfig
from wakeword.runtime.onnx import OnnxStreamer

# INT8 defaults chosen by measurement (docs/BENCHMARKS.md, "INT8 recipe"): see quantize_int8.
INT8_FORMAT = "qdq"
INT8_KEEP_ENDS_FLOAT = True
# 7-bit weights ([-64, 64]): x86 CPUs without VNNI multiply uint8 activations by int8 weights in pairs
# summed in int16 (pmaddubsw), which saturates once 255 * |w| * 2 > 32767; with |w| <= 64 it cannot, so
# every x86 CPU computes what the graph says. Measured on an AMD EPYC (AVX2, no VNNI), mean |logit|
# error of ORT's fused INT8 kernels against its own unfused DequantizeLinear -> float -> QuantizeLinear
# reference: 1.60 (max 5.4) with 8-bit weights, 0.000 with 7-bit; against the float model 1.88 vs 0.72,
# where the exact 8-bit reference would be 0.72 (benchmarks/int8_kernels.py; tests/test_qat.py).
INT8_REDUCE_RANGE = True


def streaming_calibration_feeds(stream_path: str | Path, calibration: np.ndarray, n_feeds: int = 512) -> list[dict]:
    """Inputs the streaming graph really sees (audio hop + caches in steady state), for INT8 calibration.

    The calibration windows are played as one stream through the float streaming model; after the
    warm-up, every k-th call's inputs are kept so about ``n_feeds`` remain.
    """
    st = OnnxStreamer(stream_path)
    feeds: list[dict] = []
    st.record = feeds
    st.feed(np.concatenate(list(calibration.astype(np.float32))))
    feeds = feeds[st.c["warmup_calls"]:]
    step = max(1, len(feeds) // n_feeds)
    return feeds[::step][:n_feeds]


def quantize_int8(float_path: str | Path, out_path: str | Path, calibration, fmt: str = INT8_FORMAT,
                  keep_ends_float: bool = INT8_KEEP_ENDS_FLOAT) -> Path:
    """Post-training static INT8 quantization (per-channel 7-bit weights: INT8_REDUCE_RANGE) of an exported model.

    calibration: (n, window_samples) float32 audio windows drawn from the training split (window
    model), or a list of input dicts (the streaming model: ``streaming_calibration_feeds``). Only the
    network (Conv / Gemm) is quantized; the log-mel front end stays float, since a log of an 8-bit
    power spectrum would lose the quiet bands the classifier relies on. Names are shortened again
    afterwards (the quantizer's suffixes cost more bytes than many of the weights).

    fmt: "qoperator" (QLinearConv nodes: smaller file) or "qdq" (Quantize/DequantizeLinear pairs around
    float ops). keep_ends_float: leave the first and the last conv / linear layer in float.
    Raw-audio models (speech_embedding): their STFT and other 1-D convolutions stay float as well.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if isinstance(calibration, np.ndarray):
        if calibration.ndim != 2 or len(calibration) == 0:
            raise ValueError("calibration must be a non-empty (n, window_samples) array")
        items = [{"audio": x[None]} for x in calibration.astype(np.float32)]
    else:
        items = list(calibration)
        if not items:
            raise ValueError("calibration feeds are empty")

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(items)

        def get_next(self):
            return next(self._it, None)

    if fmt not in ("qoperator", "qdq"):
        raise ValueError(f"unknown INT8 format '{fmt}': qoperator or qdq")
    out_path = Path(out_path)
    graph = onnx.load(str(float_path)).graph
    nodes = graph.node
    # 1-D convolutions stay float too: the speech-embedding model's STFT kernels (its front end, named after
    # its backbone) and its head's first layer (small, and it reads the unnormalised embeddings)
    conv1d = {i.name for i in graph.initializer if len(i.dims) == 3}
    exclude = [n.name for n in nodes if "frontend" in n.name or (n.op_type == "Conv" and n.input[1] in conv1d)]
    if keep_ends_float:  # the first conv (sees raw log-mel) and the classifier (sets the score scale)
        net = [n.name for n in nodes if n.op_type in ("Conv", "Gemm") and n.name not in exclude]
        exclude += net[:1] + net[-1:]
    qoperator = fmt == "qoperator"
    quantize_static(str(float_path), str(out_path), _Reader(),
                    quant_format=QuantFormat.QOperator if qoperator else QuantFormat.QDQ,
                    op_types_to_quantize=["Conv", "Gemm"], per_channel=True,
                    activation_type=QuantType.QUInt8 if qoperator else QuantType.QInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=exclude, reduce_range=INT8_REDUCE_RANGE)
    src, dst = onnx.load(str(float_path)), onnx.load(str(out_path))
    del dst.metadata_props[:]
    for p in src.metadata_props:
        entry = dst.metadata_props.add()
        entry.key, entry.value = p.key, p.value
    entry = dst.metadata_props.add()
    entry.key, entry.value = "quantization", json.dumps("int8-static-per-channel")
    for node in dst.graph.node:
        node.name = ""
    onnx.save(dst, str(out_path))
    compact_names(out_path)
    return out_path


def calibration_windows(data_dir: str | Path, feat: FeatureConfig, n: int = 256, seed: int = 0,
                        train: dict | None = None) -> np.ndarray:
    """``n`` augmented training windows (the distribution the model saw), for INT8 calibration.

    ``train``: the run's training config as its checkpoint saved it; its augmentation, excluded kinds and
    background kinds are used (defaults when absent)."""
    from wakeword.dataset.augment import AugmentConfig
    from wakeword.dataset.manifest import BACKGROUND_KINDS, read_manifest, select
    from wakeword.dataset.torch_data import TrainWindows, load_clips

    t = train or {}
    exclude = set(t.get("exclude_kinds", ()))
    background = tuple(t.get("background_kinds", BACKGROUND_KINDS))
    rows = sorted((r for r in select(read_manifest(data_dir), "train") if r.kind not in exclude),
                  key=lambda r: r.clip_id)
    if not rows:
        raise FileNotFoundError(f"no training clips in {data_dir} for calibration")
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in rng.choice(len(rows), size=min(n, len(rows)), replace=False)]
    clips = load_clips(rows, data_dir)
    noises = [c for r, c in zip(rows, clips) if r.kind in background]
    ds = TrainWindows(rows, clips, feat, AugmentConfig.from_dict(t.get("augment", {})), noises, [], seed)
    return np.stack([ds[i][0].numpy() for i in range(len(ds))])


__all__ = ["INT8_FORMAT", "INT8_KEEP_ENDS_FLOAT", "INT8_REDUCE_RANGE", "calibration_windows", "quantize_int8",
           "streaming_calibration_feeds"]
