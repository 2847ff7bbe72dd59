"""`wakeword eval`, `wakeword bench`, `wakeword score`: every one scores by the one protocol
(``wakeword.evaluation.scoring``) at the model's own threshold unless given one."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wakeword.cli.common import eval_sets, max_fpr_parent, scoring_parent, sets_parent


def cmd_eval(a: argparse.Namespace) -> int:
    from wakeword.evaluation.evaluate import evaluate, markdown_table
    from wakeword.runtime.detector import Detector
    from wakeword.training.feature_cache import all_cores

    det = Detector.load(a.model)
    all_cores(det.model.backbone)  # a frozen embedding's hours of audio on every core (~1.7x faster on 2 cores)
    report = evaluate(det, eval_sets(a), a.out, max_fpr=a.max_fpr, threshold=a.threshold,
                      progress=not a.quiet, refractory_s=a.refractory)
    print(markdown_table(report))
    print(f"report: {Path(a.out) / 'report.json'}  plots: {Path(a.out) / 'det.png'}, {Path(a.out) / 'roc.png'}")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from wakeword.evaluation.bench import BenchConfig, markdown, run_bench
    from wakeword.evaluation.detectors import load_detector

    sets = eval_sets(a, noise=True)
    given = {"snr_db": a.snr, "lead_s": a.lead, "tail_s": a.tail, "refractory_s": a.refractory, "max_fpr": a.max_fpr}
    cfg = BenchConfig(**{k: v for k, v in given.items() if v is not None})  # unset: the scoring protocol's
    report = run_bench([load_detector(spec) for spec in a.detector], sets, cfg, a.out, progress=not a.quiet)
    print(markdown(report))
    print(f"report: {Path(a.out) / 'bench.json'}, {Path(a.out) / 'bench.md'}, DET plots in {a.out}")
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from wakeword.audio.io import list_audio
    from wakeword.evaluation.detectors import detect_in_files, load_detector

    det = load_detector(a.model)  # the one loader: a checkpoint, a window export, a streaming export, a peer
    files = list_audio(a.files)
    results = detect_in_files(det, files, a.threshold, a.refractory, progress=not a.quiet)
    threshold = det.default_threshold if a.threshold is None else a.threshold
    fired = sum(1 for r in results if r.get("events_s"))
    failed = sum(1 for r in results if "error" in r)
    summary = {"files": len(results), "fired": fired, "errors": failed, "threshold": threshold,
               "threshold_source": "given" if a.threshold is not None else "the model's own"}
    line = (f"# {summary['files']} files, {fired} fired, {failed} unreadable; threshold {threshold:.4g} "
            f"({summary['threshold_source']})")
    if a.json:  # the per-file list on stdout (for scripts), the summary on stderr
        print(json.dumps(results, indent=2))
        print(line, file=sys.stderr)
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}\tERROR {r['error']}")
            else:
                ev = ", ".join(f"{t:.2f}s" for t in r["events_s"]) or "-"
                print(f"{r['file']}\tmax={r['max_score']:.4f}\tevents: {ev}")
        print(line)
    return 1 if results and failed == len(results) else 0


def register(sub: argparse._SubParsersAction) -> None:
    sets, scoring, fpr = sets_parent(), scoring_parent(), max_fpr_parent()
    e = sub.add_parser("eval", parents=[sets, scoring, fpr], help="evaluate on the test split and/or real audio folders")
    e.add_argument("--model", required=True)
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", parents=[sets, fpr],
                       help="several detectors (ours and openWakeWord) on the same real audio, one protocol "
                            "(always one CPU thread, so the cost column compares like with like)")
    b.add_argument("--detector", action="append", required=True,
                   help="[label=]SPEC, repeatable: a .pt checkpoint, an .onnx / .int8.onnx / .stream.onnx export, "
                        "oww:NAME (openWakeWord: alexa, hey_mycroft, hey_jarvis, hey_rhasspy, timer, weather, or a "
                        "custom model's NAME.onnx), mww:NAME (microWakeWord via pymicro-wakeword: alexa, hey_jarvis, "
                        "hey_mycroft, okay_nabu, or a manifest's NAME.json), "
                        "or A.pt+B.pt+... (an ensemble: the mean of its members' probabilities)")
    b.add_argument("--preset", action="append", help="a described data set: real-dev (../shared/data/real, 'computer')")
    b.add_argument("--noise", action="append", help="folder of background noise (for --snr)")
    b.add_argument("--phrase", help="what the --positives folders say (detectors of other phrases skip them)")
    b.add_argument("--snr", type=float, default=None, help="mix the set's noise into every clip at this SNR (dB)")
    b.add_argument("--lead", type=float, help="seconds of silence before each positive (default: half a window, "
                   "as every surface scores)")
    b.add_argument("--tail", type=float, help="seconds of silence after each positive (default: half a window)")
    b.add_argument("--refractory", type=float, help="seconds (default 1)")
    b.add_argument("--out", required=True)
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("score", parents=[scoring], help="score audio files or folders (any rate / channels): "
                       "events per file and a summary")
    s.add_argument("--model", required=True, help="a detector spec as `bench` takes: .pt checkpoint, .onnx export, ...")
    s.add_argument("files", nargs="+", help="audio files and/or folders (searched recursively)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)
