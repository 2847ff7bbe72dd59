"""The main job: typed phrase -> data -> trained detector -> evaluation -> ONNX export (window and streaming).

Only orchestration: each step is the same library call its CLI subcommand makes.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from wakeword.defaults import MAX_FPR

logger = logging.getLogger(__name__)



def run_demo(config: str | Path | None, out: str | Path, progress: bool = True, phrase: str | None = None) -> Path:
    from wakeword import configs
    from wakeword.dataset.build import DataConfig, build
    from wakeword.evaluation.evaluate import EvalSet, evaluate, markdown_table
    from wakeword.export.graph import export_onnx, export_streaming_onnx
    from wakeword.runtime.detector import Detector
    from wakeword.runtime.onnx import OnnxDetector, OnnxStreamer
    from wakeword.training.fit import TrainConfig, fit
    from wakeword.validation import load_yaml_mapping

    cfg_path = configs.resolve(config)  # a file, a shipped recipe's name, or (None) the recommended recipe

    doc = load_yaml_mapping(cfg_path, "demo config")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    # Every section is checked before the (long) data build starts.
    data_cfg = DataConfig.from_dict({**doc.get("data", {}), **({"phrase": phrase} if phrase else {})})
    train_cfg = TrainConfig.from_dict(doc.get("train", {}))
    if doc.get("distill") and not doc.get("teacher"):
        raise ValueError("demo config: a 'distill:' section needs a 'teacher:' section (the teacher to train)")
    t = time.time()
    data_report = build(data_cfg, out / "data", progress=progress)
    times["data_build_s"] = time.time() - t
    logger.info("data: %d clips from engines %s", data_report["clips"], data_report["engines_used"])
    teacher_summary = None
    if doc.get("teacher"):
        t = time.time()
        teacher_summary, distill_cfg = _train_teacher(doc, out, progress)
        times["teacher_s"] = time.time() - t
    t = time.time()
    if teacher_summary is None:
        summary = fit(train_cfg, out / "data", out / "run", progress=progress)
    else:
        from wakeword.training.distill import distill

        summary = distill(train_cfg, distill_cfg, out / "data", out / "run", progress=progress)
    times["train_s"] = time.time() - t

    t = time.time()
    ev = doc.get("eval", {}) or {}
    sets = [EvalSet.from_split(out / "data", "test")]
    skipped_sets = []
    from wakeword.evaluation.detectors import same_phrase

    for y in ev.get("sets", []):
        try:
            s = EvalSet.from_yaml(configs.eval_set_path(y, cfg_path.parent.parent))
            if s.phrase and not same_phrase(s.phrase, data_cfg.phrase):
                logger.info("evaluation set %s holds '%s', not '%s': skipped", s.name, s.phrase, data_cfg.phrase)
                continue
            sets.append(s)
        except FileNotFoundError as exc:  # the real development recordings are optional
            skipped_sets.append(str(exc))
            logger.warning("skipping evaluation set: %s", exc)
    det = Detector.load(summary["best_checkpoint"])
    from wakeword.training.feature_cache import all_cores

    all_cores(det.model.backbone)  # a frozen embedding's evaluation on every core (the head stays on one)
    report = evaluate(det, sets, out / "eval", max_fpr=ev.get("max_fpr", MAX_FPR), threshold=ev.get("threshold"),
                      progress=progress)
    times["eval_s"] = time.time() - t

    t = time.time()
    meta = {"metrics": summary["best"], "threshold": det.metadata.get("threshold"), "phrase": data_cfg.phrase}
    onnx_path = export_onnx(det.model, out / "export" / "model.onnx", metadata=meta)
    OnnxDetector(onnx_path)  # fails loudly if the export cannot be loaded back
    stream_path = export_streaming_onnx(det.model, out / "export" / "model.stream.onnx", metadata=meta)
    OnnxStreamer(stream_path)
    device_lines = _device_export(det.model.arch, summary["best_checkpoint"], out, data_cfg.phrase)
    times["export_s"] = time.time() - t

    table = markdown_table(report)
    md = [f"# wakeword demo: \"{data_cfg.phrase}\"", "",
          (f"- data: {data_report['clips']} clips ({data_report['hours']:.2f} h) from {', '.join(data_report['engines_used'])}"
          f"; skipped {data_report['skipped']} ({data_report['skipped_reasons']})"),
          (f"- best checkpoint: `{summary['best_checkpoint']}` (epoch {summary['best'].get('epoch')}, "
          f"val pAUC {summary['best'].get('val_pauc', float('nan')):.3f})"),
          f"- model: {train_cfg.arch}, {summary['params']:,} parameters, {summary['macs_per_window'] / 1e6:.2f} M "
          "MACs per window"
          + (f"; distilled from a {teacher_summary['arch']} teacher (`{teacher_summary['best_checkpoint']}`, val "
             f"pAUC {teacher_summary['best'].get('val_pauc', float('nan')):.3f})" if teacher_summary else ""),
          f"- default threshold: {det.default_threshold:.4f} " + (
              f"(the lowest whose false accepts on the validation stream ({summary['best'].get('val_stream_hours', 0):.2f} h "
              f"of unseen voices) stay within {summary['best']['threshold_fa_per_hour']:g} per hour; it misses "
              if "threshold_fa_per_hour" in summary["best"] else "(the lowest no validation negative reaches; it misses ")
          + f"{summary['best'].get('val_frr_at_threshold', float('nan')):.1%} of validation positives)",
          (f"- ONNX: `{onnx_path}` ({onnx_path.stat().st_size / 1024:.0f} KiB); streaming: `{stream_path}` "
          "(`python examples/onnx_stream.py` runs it on a WAV file or a microphone)"),
          *device_lines,
          f"- plots: `{out / 'eval' / 'det.png'}`, `{out / 'eval' / 'roc.png'}`",
          f"- timings (s): {json.dumps({k: round(v, 1) for k, v in times.items()})}", "", table, ""]
    if skipped_sets:
        md += ["Skipped evaluation sets:", *[f"- {s}" for s in skipped_sets], ""]
    report_path = out / "report.md"
    report_path.write_text("\n".join(md))
    (out / "timings.json").write_text(json.dumps(times, indent=2))
    print("\n".join(md))
    return report_path


def _device_export(arch: str, checkpoint: str | Path, out: Path, phrase: str) -> list[str]:
    """The model in the format of the device it is for, as the report's lines: the speech-embedding detector as an
    openWakeWord / Home Assistant model (OUT/export/openwakeword/NAME.onnx + .json), the mixednet student as an
    ESPHome microWakeWord model (OUT/export/esphome/NAME.tflite + .json). Other models have none. A converter that
    is not installed (the ESPHome one lives in .venv-tflite) is reported with the command that does it later."""
    from wakeword.mww_export import ExportError, model_name

    if arch == "speech_embedding":
        from wakeword.oww_export import export_openwakeword

        target, fmt, doc = out / "export" / "openwakeword" / f"{model_name(phrase)}.onnx", "openwakeword", "OPENWAKEWORD"
    elif arch == "mixednet":
        target, fmt, doc = out / "export" / "esphome", "microwakeword", "ESPHOME"
    else:
        return []
    try:
        if fmt == "openwakeword":
            man = export_openwakeword(checkpoint, target)
            return [f"- Home Assistant / openWakeWord: `{man['path']}` (+ `{Path(man['manifest']).name}`"
                    + (f", `{man['tflite']}`" if man.get("tflite") else "") + f"; docs/{doc}.md)"]
        from wakeword.mww_export import export_microwakeword

        rep = export_microwakeword(checkpoint, target, data_dir=out / "data")
        kib = Path(rep["tflite"]).stat().st_size / 1024
        return [(f"- ESPHome / microWakeWord: `{rep['tflite']}` ({kib:.0f} KiB, int8 streaming) + `{rep['manifest']}` "
                f"(tensor arena {rep['tensor_arena_size']:,} bytes; docs/{doc}.md)")]
    except (ExportError, ValueError, OSError, RuntimeError) as exc:
        logger.warning("no %s export: %s", fmt, exc)
        return [(f"- no {fmt} export ({str(exc).splitlines()[0]}); later: `wakeword export --format {fmt} --model "
                f"{checkpoint} --out {target}`")]


# Training keys a teacher shares with the student unless its own section says otherwise: the same data
# mixture and augmentation, so teacher and student learn from the same windows.
SHARED_TRAIN_KEYS = ("batch_size", "positive_fraction", "adversarial_fraction", "exclude_kinds", "val_only_kinds",
                     "background_kinds", "augment", "noise_dirs", "rir_dirs", "seed", "threads", "device")


def _train_teacher(doc: dict, out: Path, progress: bool):
    """The demo's optional ``teacher:`` section: train it, then return (its summary, the DistillConfig).

    ``teacher: {kind, train: {...}, layers: [...]}``; ``distill:`` holds the DistillConfig without teachers.
    """
    from wakeword.training.distill import DistillConfig, teacher_config
    from wakeword.training.fit import fit

    spec = dict(doc["teacher"])
    unknown = set(spec) - {"kind", "train", "layers", "weight"}
    if unknown or "kind" not in spec:
        raise ValueError(f"demo config teacher: needs 'kind' (and optionally train, layers, weight); "
                         f"unknown keys {sorted(unknown)}")
    student = doc.get("train", {}) or {}
    overrides = {k: student[k] for k in SHARED_TRAIN_KEYS if k in student}
    overrides.update(spec.get("train", {}) or {})
    summary = fit(teacher_config(spec["kind"], overrides), out / "data", out / "teacher", progress=progress)
    summary["arch"] = spec["kind"]
    teacher = {"checkpoint": summary["best_checkpoint"], "layers": list(spec.get("layers", ())),
               "weight": spec.get("weight", 1.0)}
    distill_cfg = DistillConfig.from_dict({**(doc.get("distill", {}) or {}), "teachers": [teacher]})
    return summary, distill_cfg
