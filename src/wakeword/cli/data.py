"""`wakeword data build`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from wakeword.cli.common import load_yaml, put


def cmd_data_build(a: argparse.Namespace) -> int:
    from wakeword.dataset.build import DataConfig, build

    d = load_yaml(a.config, "data")
    for key in ("phrase", "seed", "n_positive", "n_adversarial", "n_speech", "n_noise", "n_words", "n_sentences",
                "n_music", "workers"):
        put(d, key, getattr(a, key))
    put(d, "engines", a.engines.split(",") if a.engines else None)
    for key, dirs in (("positive_dirs", a.positive_dir), ("negative_dirs", a.negative_dir), ("noise_dirs", a.noise_dir)):
        put(d, key, list(d.get(key, [])) + list(dirs or []))
    report = build(DataConfig.from_dict(d), a.out, progress=not a.quiet)
    brief = {k: report[k] for k in ("phrase", "engines_used", "engines_missing", "clips", "hours", "skipped",
                                    "skipped_reasons", "cuts", "by_split_kind", "seconds")}
    print(json.dumps(brief, indent=2))
    print(f"manifest: {Path(a.out) / 'manifest.csv'}  report: {Path(a.out) / 'build_report.json'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="data set commands").add_subparsers(dest="data_cmd", required=True)
    b = data.add_parser("build", help="synthesise / collect clips and write the manifest (resumable)")
    b.add_argument("--config", help="YAML with a 'data:' section (or a shipped recipe's name: demo, demo_student)")
    b.add_argument("--out", required=True, help="data folder")
    b.add_argument("--phrase")
    b.add_argument("--seed", type=int)
    b.add_argument("--n-positive", type=int)
    b.add_argument("--n-adversarial", type=int)
    b.add_argument("--n-speech", type=int)
    b.add_argument("--n-noise", type=int)
    b.add_argument("--n-words", type=int, help="isolated common words (single-word negatives)")
    b.add_argument("--n-sentences", type=int, help="natural English sentences from data.sentence_corpora (negatives)")
    b.add_argument("--n-music", type=int, help="synthetic music clips (negatives and background)")
    b.add_argument("--engines", help="comma-separated subset of espeak-ng,flite,festival,piper")
    b.add_argument("--workers", type=int)
    b.add_argument("--positive-dir", action="append", help="folder of real wake-word recordings (repeatable)")
    b.add_argument("--negative-dir", action="append", help="folder of non-wake-word audio (repeatable)")
    b.add_argument("--noise-dir", action="append", help="folder of background noise (repeatable)")
    b.set_defaults(func=cmd_data_build)
