"""Runs one UI job in its own process: ``python -m wakeword.ui.worker WORKSPACE JOB_ID``.

Progress and results go to the workspace's SQLite store. If this process dies, the store stays
consistent (each candidate row is written once its clip is on disk) and the app marks the job failed.
"""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from wakeword.mining.store import MiningStore

logger = logging.getLogger(__name__)


def _eval_set(store: MiningStore, model: str, set_name: str):
    from wakeword.evaluation.evaluate import EvalSet
    from wakeword.mining.miner import eval_set_from_spec
    from wakeword.training.checkpoint import load_checkpoint

    if set_name == "test":
        data_dir = load_checkpoint(model).get("config", {}).get("data_dir", "")
        return EvalSet.from_split(data_dir, "test")
    specs = store.eval_sets()
    if set_name not in specs:
        raise ValueError(f"no evaluation set '{set_name}'")
    return eval_set_from_spec(set_name, specs[set_name])


def _benchmark(store: MiningStore, model: str, set_name: str, out: Path) -> dict:
    from wakeword.evaluation.evaluate import evaluate
    from wakeword.runtime.detector import Detector

    report = evaluate(Detector.load(model), [_eval_set(store, model, set_name)], out, progress=False)
    res = next(iter(report["sets"].values()))
    clips = []
    for kind, items in (("false accept", res["top_false_accepts"]), ("low-scoring positive", res["lowest_positives"])):
        for it in items[:8]:
            clips.append({"kind": kind, "file": it["file"], "score": it["score"],
                          "served": store.allow_serving(it["file"])})
    return {"model": model, "set": set_name, "metrics": {k: v for k, v in res.items() if not isinstance(v, list)},
            "det_png": str(out / "det.png"), "clips": clips}


def run(workspace: str, job_id: int) -> None:
    store = MiningStore(workspace)
    job = store.job(job_id)
    args, kind = job["args"], job["kind"]
    out = store.workspace / "ui" / "jobs" / str(job_id)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "job.log")
    logging.basicConfig(level=logging.INFO, handlers=[handler])

    def progress(frac: float, message: str) -> None:
        store.update_job(job_id, progress=round(frac, 3), message=message)

    try:
        if kind == "benchmark":
            progress(0.05, "scoring")
            result = _benchmark(store, args["model"], args["set"], out)
        elif kind == "mine":
            from wakeword.mining import miner

            progress(0.01, "building the mining pool")
            pool = miner.build_pool(args["data_dir"], store.sources(), miner.registered_eval_files(store),
                                    include_training_negatives=bool(args.get("train_negatives", True)))
            cfg = miner.MineConfig(top_k=int(args.get("top_k", 50)), min_score=float(args.get("min_score", 0.5)))
            new = miner.mine(store, args["model"], pool, cfg, progress)
            result = {"new_candidates": len(new), "pool_files": len(pool)}
        elif kind == "retrain":
            from wakeword.mining import miner

            progress(0.02, "injecting confirmed clips")
            injected = miner.inject(store, args["data_dir"])
            progress(0.1, f"{len(injected)} clips injected; fine-tuning")
            run_dir = store.workspace / "runs" / f"retrain_job{job_id}"
            miner.retrain(args["model"], args["data_dir"], run_dir, epochs=int(args.get("epochs", 4)),
                          steps_per_epoch=args.get("steps_per_epoch"))
            new_model = str(run_dir / "best.pt")
            progress(0.8, "benchmarking before/after on the untouched test split")
            before = _benchmark(store, args["model"], "test", out / "before")
            after = _benchmark(store, new_model, "test", out / "after")
            result = {"injected": len(injected), "new_model": new_model,
                      "before": before["metrics"], "after": after["metrics"], "det_png": after["det_png"]}
        else:
            raise ValueError(f"unknown job kind '{kind}'")
        store.update_job(job_id, progress=1.0, status="done", message="finished", result=result)
    except Exception as exc:  # the job fails; the app stays up and says why
        (out / "error.txt").write_text(traceback.format_exc())
        store.update_job(job_id, status="failed", message=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
    sys.exit(0)

__all__ = ["run"]
