"""ONNX export with the log-mel front end inside the graph: the device feeds raw 16 kHz audio.

Graph: input ``audio`` (batch, window_samples) float32 in [-1, 1] -> output ``score`` (batch,) in
[0, 1]. The front-end parameters travel in the model's metadata so a runtime can check its audio.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wakeword.defaults import model_threshold
from wakeword.features.logmel import FeatureConfig
from wakeword.models.base import fold_batchnorm
from wakeword.models.kws import WakeWordModel

logger = logging.getLogger(__name__)

ONNX_FORMAT = "wakeword-onnx-v1"


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

    if model.input_kind != "mel" and not hasattr(model.backbone, "stream_step"):
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


class OnnxDetector:
    """Runs an exported model with onnxruntime only; the same windows as ``Detector.score_track``."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") == ONNX_FORMAT + "-streaming":
            raise ValueError(f"{path} is a streaming export: score it with `wakeword score` / `bench`, or "
                             "OnnxStreamer (it is fed hop by hop), not as a window model")
        if meta.get("format") != ONNX_FORMAT:
            raise ValueError(f"{path} is not a wakeword ONNX export (no '{ONNX_FORMAT}' metadata)")
        try:
            self.features = json.loads(meta["features"])
            self.feat = FeatureConfig(**self.features)
            if self.feat.sample_rate <= 0 or self.feat.window_samples <= 0:
                raise ValueError("non-positive sample rate or window")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} has broken wakeword metadata (its 'features' entry: {exc!r}); "
                             "export the model again") from None
        self.metadata = {"path": str(path), **{k: v for k, v in meta.items() if k != "features"}}
        self.window_samples = self.feat.window_samples
        self.stride_samples = self.feat.score_stride * self.feat.hop_length

    @property
    def default_threshold(self) -> float:
        """The threshold stored at export (the checkpoint's), else the fallback (wakeword.defaults)."""
        t = json.loads(self.metadata.get("threshold", "null"))
        return model_threshold(t)

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """windows: (batch, window_samples) float32 -> (batch,) scores."""
        return self.session.run(["score"], {"audio": windows.astype(np.float32)})[0]

    def score_track(self, audio: np.ndarray, batch: int = 64) -> tuple[np.ndarray, float]:
        """Same contract as ``Detector.score_track``: (scores (n_windows,), hop_s)."""
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio (samples,), got shape {audio.shape}")
        if len(audio) < self.window_samples:
            audio = np.concatenate([audio, np.zeros(self.window_samples - len(audio), np.float32)])
        # A view of every window, copied one batch at a time: memory stays flat however long the track
        # (materialising all windows of 20 minutes took 3.45 GB).
        wins = np.lib.stride_tricks.sliding_window_view(audio, self.window_samples)[::self.stride_samples]
        scores = np.concatenate([self.score_windows(np.ascontiguousarray(wins[i:i + batch]))
                                 for i in range(0, len(wins), batch)])
        return scores, self.feat.score_hop_s


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


def trained_phrase(data_dir: str | None) -> str | None:
    """The wake phrase of the data a checkpoint was trained on (None when the folder is gone)."""
    try:
        return json.loads((Path(data_dir) / "data_config.json").read_text()).get("phrase") if data_dir else None
    except (OSError, ValueError):
        return None


QAT_AUTO_DROP_POINTS = 0.5  # `qat="auto"` fine-tunes when a static INT8 graph loses more test-split pAUC
QAT_MODES = ("off", "auto", "on")


def _accuracy(s, windows: dict[str, Path], streams: dict[str, Path], progress: bool) -> dict[str, dict]:
    """pAUC and FRR at 0.5 FA/h of each model on evaluation set ``s``: window graphs scored clip by clip,
    streaming graphs fed hop by hop (the `wakeword bench` protocol, what a device runs)."""
    from wakeword.evaluation.evaluate import load_set_audio, score_set, summarise

    def brief(m: dict) -> dict:
        return {"pauc": m["pauc"], "frr_at_0.5_fa_per_hour": m["frr_at_fa_per_hour"]["0.5"]["frr"]}

    res = {}
    pos, neg, skipped = load_set_audio(s, progress)
    for name, path in windows.items():
        res[name] = brief(summarise(score_set(OnnxDetector(path), pos, neg, skipped, progress=progress)))
    del pos, neg
    if streams:
        from wakeword.evaluation.bench import BenchConfig, prepare_set, score_detector
        from wakeword.evaluation.detectors import StreamingOnnxDetector

        ps = prepare_set(s, BenchConfig(), progress)
        for name, path in streams.items():
            sc, _ = score_detector(StreamingOnnxDetector(str(path), name), ps, BenchConfig(), progress)
            res[name] = brief(summarise(sc))
    return res


def _drops(res: dict, ref: str, new: str, prefix: str = "") -> dict:
    """pAUC drop and FRR@0.5 FA/h increase of model ``new`` against ``ref``, in points."""
    return {f"{prefix}pauc_drop_points": round(100 * (res[ref]["pauc"] - res[new]["pauc"]), 3),
            f"{prefix}frr_at_0.5_increase_points": round(
                100 * (res[new]["frr_at_0.5_fa_per_hour"] - res[ref]["frr_at_0.5_fa_per_hour"]), 3)}


def _int8_data_dir(data_dir: str | Path | None, ckpt: dict) -> Path:
    """The data folder for calibration and the test split: ``data_dir``, else the one the run recorded."""
    from wakeword.dataset.manifest import MANIFEST_NAME

    recorded = ckpt.get("config", {}).get("data_dir")
    path = Path(data_dir) if data_dir else Path(recorded) if recorded else None
    if path is None or not (path / MANIFEST_NAME).is_file():
        where = f"{path} has no {MANIFEST_NAME}" if path else "the checkpoint records no data folder"
        raise FileNotFoundError(f"INT8 export (and QAT) needs the model's data folder for calibration and the "
                                f"test split: {where}; pass --data")
    return path


def export_model(checkpoint: str | Path, out: str | Path, int8: bool = False, data_dir: str | Path | None = None,
                 eval_sets: list | None = None, progress: bool = True, streaming: bool = False, qat: str = "off",
                 qat_steps: int = 300, qat_lr: float | None = None) -> dict:
    """Export float ONNX (and INT8 when asked, with a float-vs-INT8 accuracy report). Returns the report.

    qat: "off"; "on": also fine-tune the checkpoint through fake INT8 (``TrainConfig.qat``, ``qat_steps``
    optimizer steps at ``qat_lr``, default 0.1 x the run's lr; run folder NAME.qat/, resumable), quantize
    that, and write whichever INT8 model has the higher test-split pAUC; "auto": the same only when a
    static INT8 graph (window, or streaming) loses more than ``QAT_AUTO_DROP_POINTS`` of test-split pAUC. Needs ``int8``.
    """
    from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint

    if qat not in QAT_MODES:
        raise ValueError(f"unknown QAT mode '{qat}': one of {', '.join(QAT_MODES)}")
    if qat != "off" and not int8:
        raise ValueError("--qat fine-tunes for the INT8 export: add --int8")
    if qat != "off" and qat_steps < 1:
        raise ValueError(f"--qat-steps must be at least 1, got {qat_steps}")
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    out = Path(out)
    if int8:
        data_dir = _int8_data_dir(data_dir, ckpt)
    meta = {"metrics": ckpt.get("metrics", {}), "threshold": ckpt.get("threshold"),
            "phrase": trained_phrase(ckpt.get("config", {}).get("data_dir"))}
    float_path = export_onnx(model, out, metadata=meta)
    report: dict = {"float": {"path": str(float_path), "kib": round(float_path.stat().st_size / 1024, 1)}}
    if streaming:
        sp = export_streaming_onnx(model, out.with_name(out.stem + ".stream.onnx"), metadata=meta)
        report["streaming"] = {"path": str(sp), "kib": round(sp.stat().st_size / 1024, 1),
                               "contract": model_stream_contract(model)}
    if not int8:
        (out.with_name(out.stem + ".export_report.json")).write_text(json.dumps(report, indent=2))
        return report
    from wakeword.evaluation.evaluate import EvalSet

    int8_path = out.with_name(out.stem + ".int8.onnx")
    # one draw for both graphs, augmented as the run was trained
    calibration = calibration_windows(data_dir, model.feat, train=ckpt.get("config", {}).get("train"))
    quantize_int8(float_path, int8_path, calibration)
    report["int8"] = {"path": str(int8_path), "kib": round(int8_path.stat().st_size / 1024, 1), "source": "static"}
    streams: dict[str, Path] = {}
    if streaming:
        sp8 = out.with_name(out.stem + ".stream.int8.onnx")
        quantize_int8(sp, sp8, streaming_calibration_feeds(sp, calibration))
        report["streaming_int8"] = {"path": str(sp8), "kib": round(sp8.stat().st_size / 1024, 1), "source": "static"}
        streams = {"stream_float": sp, "stream_int8": sp8}
    sets = [EvalSet.from_split(data_dir, "test")] + list(eval_sets or [])
    report["accuracy"] = {}
    for s in sets:
        res = _accuracy(s, {"float": float_path, "int8": int8_path}, streams, progress)
        res.update(_drops(res, "float", "int8"))
        if streaming:
            res.update(_drops(res, "stream_float", "stream_int8", "stream_"))
        report["accuracy"][s.name] = res
    # The worst test-split drop of the graphs written (window, and streaming when asked): a streaming
    # graph that loses more than the window one must trigger `auto` too.
    test_acc = report["accuracy"][sets[0].name]
    static_drop = max(test_acc["pauc_drop_points"], test_acc.get("stream_pauc_drop_points", -1e9))
    if qat == "on" or (qat == "auto" and static_drop > QAT_AUTO_DROP_POINTS):
        logger.info("quantization-aware fine-tuning (static INT8 test-split pAUC drop %.3f points)", static_drop)
        report["qat"] = {"mode": qat, "ran": True, "reason": "asked (--qat on)" if qat == "on" else
                         f"static INT8 test-split pAUC drop {static_drop} > {QAT_AUTO_DROP_POINTS} points",
                         **_qat_int8(checkpoint, ckpt, out, data_dir, calibration, sets, streaming, qat_steps,
                                     qat_lr, meta, report, progress)}
    elif qat == "auto":
        report["qat"] = {"mode": "auto", "ran": False, "reason": f"static INT8 test-split pAUC drop {static_drop} "
                         f"<= {QAT_AUTO_DROP_POINTS} points"}
    # The verdict is on the INT8 files written (QAT's when it won).
    worst = -1e9
    for r in report["accuracy"].values():
        worst = max(worst, r["qat_pauc_drop_points"] if report["int8"]["source"] == "qat" else r["pauc_drop_points"])
        if streaming:
            worst = max(worst, r["stream_qat_pauc_drop_points"] if report["streaming_int8"]["source"] == "qat"
                        else r["stream_pauc_drop_points"])
    report["int8_within_0.5_pauc_points"] = bool(worst <= 0.5)
    if worst > 0.5:
        hint = "" if report.get("qat", {}).get("ran") else " or --qat on"
        logger.warning("INT8 loses %.2f pAUC points (> 0.5): consider the float model%s", worst, hint)
    report_path = out.with_name(out.stem + ".export_report.json")
    report_path.write_text(json.dumps(report, indent=2))
    report["report"] = str(report_path)
    return report


def _qat_int8(checkpoint: str | Path, ckpt: dict, out: Path, data_dir: Path, calibration: np.ndarray, sets: list,
              streaming: bool, steps: int, lr: float | None, meta: dict, report: dict, progress: bool) -> dict:
    """Fine-tune through fake INT8 in NAME.qat/, quantize the result with the same calibration windows,
    score it on every set, and put it in place of the static INT8 file(s) where its test-split pAUC is
    higher. Adds ``int8_qat`` (and ``stream_int8_qat``) entries to ``report["accuracy"]``, and the QAT
    model's own float scores (``float_qat``): the fine-tune also trains, so a drop against the original
    float model mixes quantization robustness with what the extra steps learnt. Returns the report's
    ``qat`` section."""
    import dataclasses
    import math
    import shutil

    from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint
    from wakeword.training.fit import TrainConfig, fit

    train = ckpt.get("config", {}).get("train")
    if not train:
        raise ValueError(f"{checkpoint} records no train config: QAT fine-tunes with the run's own recipe")
    base = TrainConfig.from_dict(train)
    epochs = math.ceil(steps / 100)  # an epoch (validation + resumable checkpoint) every <= 100 steps
    cfg = dataclasses.replace(base, qat=True, init_from=str(Path(checkpoint).resolve()), epochs=epochs,
                              steps_per_epoch=math.ceil(steps / epochs), lr=lr if lr else 0.1 * base.lr)
    run_dir = out.with_name(out.stem + ".qat")
    summary = fit(cfg, data_dir, run_dir, progress=progress)
    qckpt = load_checkpoint(run_dir / "best.pt")
    qmodel = model_from_checkpoint(qckpt)
    qmeta = {**meta, "metrics": qckpt.get("metrics", {}), "qat": {"steps": cfg.epochs * cfg.steps_per_epoch,
                                                                   "lr": cfg.lr, "from": str(checkpoint)}}
    qfloat = export_onnx(qmodel, run_dir / "model.onnx", metadata=qmeta)
    qf = quantize_int8(qfloat, run_dir / "model.int8.onnx", calibration)
    streams = {}
    if streaming:
        qs = export_streaming_onnx(qmodel, run_dir / "model.stream.onnx", metadata=qmeta)
        streams = {"stream_float_qat": qs, "stream_int8_qat": quantize_int8(
            qs, run_dir / "model.stream.int8.onnx", streaming_calibration_feeds(qs, calibration))}
    section: dict = {"run_dir": str(run_dir), "checkpoint": str(run_dir / "best.pt"),
                     "steps": cfg.epochs * cfg.steps_per_epoch, "lr": float(f"{cfg.lr:.4g}"),
                     "val_pauc_fake_int8": summary["best"].get("val_pauc"),
                     "drops": "points, static and qat against the original float model; qat_own: the QAT "
                              "model's float -> INT8", "pauc_drop_points": {}, "frr_at_0.5_increase_points": {}}
    for s in sets:
        r = report["accuracy"][s.name]
        r.update(_accuracy(s, {"float_qat": qfloat, "int8_qat": qf}, streams, progress))
        r.update(_drops(r, "float", "int8_qat", "qat_"))
        r.update(_drops(r, "float_qat", "int8_qat", "qat_own_"))
        for kind in ("pauc_drop_points", "frr_at_0.5_increase_points"):
            section[kind][s.name] = {"static": r[kind], "qat": r[f"qat_{kind}"], "qat_own": r[f"qat_own_{kind}"]}
        if streaming:
            r.update(_drops(r, "stream_float", "stream_int8_qat", "stream_qat_"))
            r.update(_drops(r, "stream_float_qat", "stream_int8_qat", "stream_qat_own_"))
            for kind in ("pauc_drop_points", "frr_at_0.5_increase_points"):
                section.setdefault(f"stream_{kind}", {})[s.name] = {"static": r[f"stream_{kind}"],
                                                                    "qat": r[f"stream_qat_{kind}"],
                                                                    "qat_own": r[f"stream_qat_own_{kind}"]}
    test = report["accuracy"][sets[0].name]
    section["written"] = {}
    graphs = [("int8", "int8", "int8_qat", qf)]
    if streaming:
        graphs.append(("streaming_int8", "stream_int8", "stream_int8_qat", streams["stream_int8_qat"]))
    for key, static, qat_key, qat_path in graphs:
        won = test[qat_key]["pauc"] > test[static]["pauc"]
        if won:
            shutil.copyfile(qat_path, report[key]["path"])
            report[key]["kib"] = round(Path(qat_path).stat().st_size / 1024, 1)
        report[key]["source"] = "qat" if won else "static"
        section["written"][key] = (f"{'qat' if won else 'static'}: the INT8 model with the higher test-split pAUC "
                                   f"(QAT {test[qat_key]['pauc']:.4f} vs static {test[static]['pauc']:.4f})")
        logger.info("%s: %s", report[key]["path"], section["written"][key])
    return section


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
    if not hasattr(model.backbone, "stream_step"):
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


class OnnxStreamer:
    """Drives a streaming export with onnxruntime only; feed any chunk sizes, get scores as windows complete."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT + "-streaming":
            raise ValueError(f"{path} is not a wakeword streaming export")
        try:
            self.c = json.loads(meta["stream"])
            for key in ("sample_rate", "chunk", "sample_cache", "warmup_calls"):
                if not isinstance(self.c[key], int) or self.c[key] < (0 if key == "warmup_calls" else 1):
                    raise ValueError(f"{key} = {self.c[key]!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} has broken wakeword streaming metadata ({exc!r}); export the model again") \
                from None
        self.record: list | None = None  # when a list: every call's inputs are appended (INT8 calibration)
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)
        self._samples: np.ndarray | None = None
        self._caches = self.initial_caches()
        self._calls = 0

    def initial_caches(self) -> dict[str, np.ndarray]:
        """The state inputs besides the sample cache, as a stream starts (zeros), by input name."""
        # exports before the contract listed its caches have the one log-mel feature cache
        shapes = self.c.get("caches") or {"feature_cache": [1, self.c["n_mels"], self.c["feature_cache_frames"]]}
        return {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        """Append audio (float32 mono at the model's rate); return scores of the windows it completed."""
        self._pending = np.concatenate([self._pending, np.asarray(chunk, np.float32)])
        out = []
        if self._samples is None:
            if len(self._pending) < self.c["sample_cache"]:
                return np.zeros(0, np.float32)
            self._samples = self._pending[None, : self.c["sample_cache"]]
            self._pending = self._pending[self.c["sample_cache"]:]
        n = self.c["chunk"]
        while len(self._pending) >= n:
            audio, self._pending = self._pending[None, :n], self._pending[n:]
            feed = {"audio": audio, "sample_cache": self._samples, **self._caches}
            if self.record is not None:
                self.record.append(feed)
            score, self._samples, *caches = self.session.run(None, feed)
            self._caches = dict(zip(self._caches, caches))
            self._calls += 1
            if self._calls > self.c["warmup_calls"]:
                out.append(float(score[0]))
        return np.array(out, np.float32)
