"""`wakeword mine register|run|queue|confirm|discard|inject`: hard-negative mining, the CLI twin of the UI."""
from __future__ import annotations

import argparse
from pathlib import Path


def _data_dir_of(model: str | None) -> str:
    from wakeword.training.checkpoint import load_checkpoint

    if not model:
        raise SystemExit("error: give --data (or --model, whose training data is used)")
    d = load_checkpoint(model).get("config", {}).get("data_dir")
    if not d:
        raise SystemExit(f"error: {model} does not record its data folder; give --data")
    return d


def cmd_mine(a: argparse.Namespace) -> int:
    from wakeword.defaults import is_audio
    from wakeword.mining import miner
    from wakeword.mining.store import MiningStore

    store = MiningStore(a.workspace)
    if a.mine_cmd == "register":
        n = 0
        for item in a.paths:
            p = Path(item)
            for f in [f for f in sorted(p.rglob("*")) if is_audio(f)] if p.is_dir() else [p]:
                store.add_source(f)
                n += 1
        print(f"{n} negative source files registered in {store.path}")
    elif a.mine_cmd == "run":
        data_dir = a.data or _data_dir_of(a.model)
        pool = miner.build_pool(data_dir, store.sources(), miner.registered_eval_files(store),
                                include_training_negatives=not a.no_train_negatives)
        cfg = miner.MineConfig(**{k: v for k, v in (("min_score", a.min_score), ("top_k", a.top_k))
                                  if v is not None})
        new = miner.mine(store, a.model, pool, cfg)
        print(f"{len(new)} new candidates from {len(pool)} pool files; queue: {store.counts()}")
    elif a.mine_cmd == "queue":
        rows = store.candidates(status=a.status, min_score=a.min_score)
        print("id\tstatus\tscore\toffset_s\tsource\tclip")
        for c in rows:
            status = "injected" if c.injected_at else c.status
            print(f"{c.id}\t{status}\t{c.score:.4f}\t{c.offset_s:.2f}\t{c.source}\t{c.clip}")
        print(f"# {len(rows)} shown; totals {store.counts()}")
    elif a.mine_cmd in ("confirm", "discard"):
        n = store.decide(a.ids, "confirmed" if a.mine_cmd == "confirm" else "discarded")
        print(f"{n} candidates {a.mine_cmd}ed")
    elif a.mine_cmd == "inject":
        data_dir = a.data or _data_dir_of(a.model)
        added = miner.inject(store, data_dir)
        print(f"{len(added)} confirmed clips added to the training split of {data_dir} as hard negatives")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    mn = sub.add_parser("mine", help="hard-negative mining (the CLI twin of the UI)").add_subparsers(
        dest="mine_cmd", required=True)
    ws = argparse.ArgumentParser(add_help=False)
    ws.add_argument("--workspace", default=".", help="workspace folder (holds wakeword.db)")
    for name, text in (("register", "register negative recordings/clips (files or folders) for the pool"),
                       ("run", "score the pool and queue the top false alarms"),
                       ("queue", "list candidates"), ("confirm", "confirm candidates (they are not the wake word)"),
                       ("discard", "discard candidates"), ("inject", "add confirmed clips to the training split")):
        m = mn.add_parser(name, parents=[ws], help=text)
        if name == "register":
            m.add_argument("paths", nargs="+")
        if name in ("run", "inject"):
            m.add_argument("--model", help="checkpoint (run: the detector; inject: its data folder is used)")
            m.add_argument("--data", help="data folder (default: the model's training data)")
        if name == "run":
            m.add_argument("--min-score", type=float)
            m.add_argument("--top-k", type=int)
            m.add_argument("--no-train-negatives", action="store_true", help="mine registered sources only")
        if name == "queue":
            m.add_argument("--status", choices=["pending", "confirmed", "discarded", "injected"])
            m.add_argument("--min-score", type=float)
        if name in ("confirm", "discard"):
            m.add_argument("ids", type=int, nargs="+")
        m.set_defaults(func=cmd_mine)
