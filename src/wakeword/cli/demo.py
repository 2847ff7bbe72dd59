"""`wakeword demo`: the main job for your own phrase (data -> recommended model -> evaluation -> ONNX)."""
from __future__ import annotations

import argparse


def cmd_demo(a: argparse.Namespace) -> int:
    from wakeword.pipeline import run_demo

    report_path = run_demo(a.config, a.out, progress=not a.quiet, phrase=a.phrase)
    print(f"\nDemo finished. Report: {report_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="build data, train, evaluate and export with one command")
    d.add_argument("--config", default=None, help="YAML with data/train/eval sections, or a shipped recipe's name "
                   "(default: demo, the recommended recipe; demo_student: the microcontroller-sized student)")
    d.add_argument("--out", default="work/demo")
    d.add_argument("--phrase", help="your wake phrase (default: the config's, 'computer'); the real development "
                   "recordings are only used to evaluate a phrase they hold")
    d.set_defaults(func=cmd_demo)
