"""``export_model``: a checkpoint -> float ONNX (window, and streaming when asked), and INT8 with a float-vs-INT8
accuracy report through the one scoring protocol; optional quantization-aware fine-tuning through ``fit``."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from wakeword.export.graph import export_onnx, export_streaming_onnx, model_stream_contract
from wakeword.export.quantize import calibration_windows, quantize_int8, streaming_calibration_feeds
from wakeword.runtime.detector import trained_phrase
from wakeword.runtime.onnx import OnnxDetector

logger = logging.getLogger(__name__)


QAT_AUTO_DROP_POINTS = 0.5  # `qat="auto"` fine-tunes when a static INT8 graph loses more test-split pAUC
QAT_MODES = ("off", "auto", "on")


def _accuracy(s, windows: dict[str, Path], streams: dict[str, Path], progress: bool) -> dict[str, dict]:
    """pAUC and FRR at 0.5 FA/h of each model on evaluation set ``s`` by the one scoring protocol: window graphs
    window by window, streaming graphs fed hop by hop (what a device runs)."""
    from wakeword.evaluation.detectors import StreamingOnnxDetector
    from wakeword.evaluation.evaluate import load_set_audio
    from wakeword.evaluation.scoring import StreamDetector, TrackDetector, score_set, summarise

    res = {}
    pos, neg, skipped = load_set_audio(s, progress)
    graphs: dict[str, StreamDetector] = {name: TrackDetector(OnnxDetector(path), name, kind="onnx")
                                         for name, path in windows.items()}
    graphs.update({name: StreamingOnnxDetector(str(path), name) for name, path in streams.items()})
    for name, det in graphs.items():
        m = summarise(score_set(det, pos, neg, skipped, progress=progress), threshold=det.default_threshold)
        res[name] = {"pauc": m["pauc"], "frr_at_0.5_fa_per_hour": m["frr_at_fa_per_hour"]["0.5"]["frr"]}
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
    data = _int8_data_dir(data_dir, ckpt) if int8 else Path()  # only INT8 (and QAT) read the data folder
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
    calibration = calibration_windows(data, model.feat, train=ckpt.get("config", {}).get("train"))
    quantize_int8(float_path, int8_path, calibration)
    report["int8"] = {"path": str(int8_path), "kib": round(int8_path.stat().st_size / 1024, 1), "source": "static"}
    streams: dict[str, Path] = {}
    if streaming:
        sp8 = out.with_name(out.stem + ".stream.int8.onnx")
        quantize_int8(sp, sp8, streaming_calibration_feeds(sp, calibration))
        report["streaming_int8"] = {"path": str(sp8), "kib": round(sp8.stat().st_size / 1024, 1), "source": "static"}
        streams = {"stream_float": sp, "stream_int8": sp8}
    sets = [EvalSet.from_split(data, "test")] + list(eval_sets or [])
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
                         **_qat_int8(checkpoint, ckpt, out, data, calibration, sets, streaming, qat_steps,
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


__all__ = ["QAT_AUTO_DROP_POINTS", "QAT_MODES", "export_model"]
