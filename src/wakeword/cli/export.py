"""`wakeword export` and `wakeword convert-checkpoint`."""
from __future__ import annotations

import argparse
import json


def cmd_export(a: argparse.Namespace) -> int:
    from wakeword.evaluation.evaluate import EvalSet
    from wakeword.export.model import export_model

    if a.format == "microwakeword":
        from wakeword.mww_export import DEFAULT_WEBSITE, export_microwakeword

        if a.int8 or a.streaming or a.qat != "off":
            raise ValueError("--format microwakeword always writes the int8 streaming .tflite: drop --int8 / "
                             "--streaming / --qat")
        print(json.dumps(export_microwakeword(
            a.model, a.out, wake_word=a.wake_word, data_dir=a.data, author=a.author or "wakeword",
            website=a.website or DEFAULT_WEBSITE, sliding_window_size=a.sliding_window,
            probability_cutoff=a.probability_cutoff), indent=2))
        return 0
    if a.format == "openwakeword":
        from wakeword.oww_export import export_openwakeword

        if a.int8 or a.streaming or a.qat != "off":
            raise ValueError("--format openwakeword writes the head over openWakeWord's own front end "
                             "(float, run by openWakeWord): drop --int8 / --streaming / --qat")
        print(json.dumps(export_openwakeword(a.model, a.out), indent=2))
        return 0
    sets = [EvalSet.from_yaml(y) for y in a.set or []]
    report = export_model(a.model, a.out, int8=a.int8, data_dir=a.data, eval_sets=sets, progress=not a.quiet,
                          streaming=a.streaming, qat=a.qat, qat_steps=a.qat_steps, qat_lr=a.qat_lr)
    print(json.dumps(report, indent=2))
    return 0


def cmd_convert_checkpoint(a: argparse.Namespace) -> int:
    from wakeword.training.checkpoint import convert_checkpoint

    if not a.trust_source:
        raise SystemExit("error: converting unpickles the file, which can run code from it: only convert a "
                         "checkpoint from a source you trust, and say so with --trust-source")
    convert_checkpoint(a.src, a.dst)
    print(f"{a.dst}: plain-data checkpoint (loads with weights_only=True)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export", help="export ONNX with the front end inside")
    x.add_argument("--model", required=True)
    x.add_argument("--out", required=True, help="output .onnx path (INT8 goes next to it as NAME.int8.onnx)")
    x.add_argument("--format", choices=("wakeword", "openwakeword", "microwakeword"), default="wakeword",
                   help="wakeword: raw audio in, score out (ours); openwakeword: the head of a speech_embedding "
                        "model as a custom openWakeWord / Home Assistant model (NAME.onnx + NAME.json); "
                        "microwakeword: a mixednet model as an ESPHome micro_wake_word model (int8 streaming "
                        "NAME.tflite + NAME.json manifest; --out is a folder; docs/ESPHOME.md)")
    for flag, text in (("--wake-word", "microwakeword: the phrase in the manifest (default: the data folder's)"),
                       ("--author", "microwakeword: the manifest's author"),
                       ("--website", "microwakeword: the manifest's website (default: a placeholder)")):
        x.add_argument(flag, help=text)
    x.add_argument("--sliding-window", type=int, default=1,
                   help="microwakeword: probabilities ESPHome averages before the cutoff (1: the checkpoint's "
                        "threshold as calibrated)")
    x.add_argument("--probability-cutoff", type=float,
                   help="microwakeword: the manifest's cutoff (default: the checkpoint's calibrated threshold)")
    x.add_argument("--int8", action="store_true", help="also write a static INT8 model and its accuracy report")
    x.add_argument("--streaming", action="store_true",
                   help="also write NAME.stream.onnx: one hop of audio + state in, score + new state out")
    x.add_argument("--data", help="data folder for calibration and the test split (default: the training data)")
    x.add_argument("--set", action="append", help="extra evaluation-set YAML for the float-vs-INT8 report")
    x.add_argument("--qat", choices=("off", "auto", "on"), default="off",
                   help="quantization-aware fine-tuning for --int8 (run folder NAME.qat/, resumable); the INT8 file "
                        "written is the better of static and QAT by test-split pAUC. auto: only when a static INT8 "
                        "graph (window or streaming) loses more than 0.5 pAUC points on the test split")
    x.add_argument("--qat-steps", type=int, default=300, help="QAT optimizer steps (default 300)")
    x.add_argument("--qat-lr", type=float, default=None, help="QAT peak learning rate (default 0.1 x the run's)")
    x.set_defaults(func=cmd_export)

    cv = sub.add_parser("convert-checkpoint", help="rewrite an old (pickled-object) checkpoint as plain data "
                                                    "that loads without running code; trusted files only")
    cv.add_argument("src")
    cv.add_argument("dst")
    cv.add_argument("--trust-source", action="store_true",
                    help="required: the old file is unpickled, which runs any code it holds")
    cv.set_defaults(func=cmd_convert_checkpoint)
