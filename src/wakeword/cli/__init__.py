"""The command line: thin subcommands that parse, build a config and call the library.

One module per command group (``data``, ``train``, ``experiment``, ``hpo``, ``mine``, ``serve``, ``evaluate``,
``export``, ``demo``), each with a ``register(subparsers)``; the flags several commands share are parent parsers
in ``common``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from wakeword.cli import data, demo, evaluate, experiment, export, hpo, mine, serve, train

logger = logging.getLogger("wakeword")

GROUPS = (data, train, experiment, hpo, mine, serve, evaluate, export, demo)  # the order of `wakeword --help`
INFERENCE_COMMANDS = ("eval", "score", "export", "demo", "mine", "serve")  # --threads applies to these


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wakeword", description="Train custom wake-word detectors of very high precision.")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for inference (default 1: fastest for these small models)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads > 0 and args.cmd in INFERENCE_COMMANDS:
        import torch

        torch.set_num_threads(args.threads)
    from wakeword.dataset.manifest import DataFolderBusy

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError, DataFolderBusy) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
