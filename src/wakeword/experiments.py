"""Measured comparisons that train several models on the same data and seeds.

``distill_experiment``: the baseline student, each teacher, and students distilled from both teachers
and from each alone, over several seeds; all evaluated on the test split and the real development
recordings; a mean +- std table. Every run is resumable: finished trainings and evaluations are kept,
a killed experiment continues where it stopped.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wakeword.defaults import MAX_FPR

logger = logging.getLogger(__name__)

VARIANTS = ("baseline", "teacher_conformer", "teacher_wav2vec2", "distill_both", "distill_conformer",
            "distill_wav2vec2", "teacher_speech_embedding", "distill_speech_embedding")
BOTH = ("conformer", "wav2vec2")  # the two teachers of distill_both
DEFAULT_VARIANTS = VARIANTS[:6]  # the speech-embedding teacher needs openWakeWord's feature models: opt in


@dataclass(frozen=True)
class DistillExperiment:
    data_dir: str  # a built data folder (e.g. work/demo/data from `make demo`)
    seeds: tuple[int, ...] = (0, 1, 2)  # each variant is trained once per seed
    train: dict = field(default_factory=dict)  # TrainConfig of the students (seed set per run)
    teachers: dict = field(default_factory=dict)  # kind -> TrainConfig overrides of that teacher
    distill: dict = field(default_factory=dict)  # DistillConfig (teachers filled in per run)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    eval_sets: tuple[str, ...] = ()  # evaluation-set YAMLs besides the test split
    fa_per_hour: tuple[float, ...] = (0.5, 1.0)  # operating points of the table
    max_fpr: float = MAX_FPR  # pAUC region

    @classmethod
    def from_yaml(cls, path: str | Path) -> DistillExperiment:
        import yaml

        d = yaml.safe_load(Path(path).read_text()) or {}
        d = dict(d.get("experiment", d) or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown experiment keys: {sorted(unknown)}")
        for k in ("seeds", "variants", "eval_sets", "fa_per_hour"):
            if k in d:
                d[k] = tuple(d[k])
        exp = cls(**d)
        bad = set(exp.variants) - set(VARIANTS)
        if bad:
            raise ValueError(f"unknown variants {sorted(bad)}; known: {list(VARIANTS)}")
        return exp


def _train_job(job: dict) -> str:
    """One training run in a worker process (resumes a killed run). Returns the best checkpoint."""
    import torch

    from wakeword.training.distill import DistillConfig, distill, teacher_config
    from wakeword.training.fit import TrainConfig, fit

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_dir = Path(job["run_dir"])
    if (run_dir / "train_summary.json").exists():
        return str(run_dir / "best.pt")
    if job["kind"] == "teacher":
        cfg = teacher_config(job["arch"], job["train"])
        fit(cfg, job["data_dir"], run_dir, progress=False)
    elif job["kind"] == "student":
        fit(TrainConfig.from_dict(job["train"]), job["data_dir"], run_dir, progress=False)
    else:
        distill(TrainConfig.from_dict(job["train"]), DistillConfig.from_dict(job["distill"]), job["data_dir"],
                run_dir, progress=False)
    return str(run_dir / "best.pt")


def _train_eval_job(job: dict) -> dict:
    """Train (or resume) one run, then evaluate its best checkpoint: one unit of work for the pool."""
    checkpoint = _train_job(job)
    return _eval_job({**job["eval"], "checkpoint": checkpoint})


def _eval_job(job: dict) -> dict:
    import torch

    from wakeword.evaluation.evaluate import EvalSet, evaluate
    from wakeword.runtime.detector import Detector

    torch.set_num_threads(1)
    out = Path(job["out"])
    if (out / "report.json").exists():
        return json.loads((out / "report.json").read_text())
    sets = [EvalSet.from_split(job["data_dir"], "test")] + [EvalSet.from_yaml(y) for y in job["eval_sets"]]
    t0 = time.process_time()
    report = evaluate(Detector.load(job["checkpoint"]), sets, out, max_fpr=job["max_fpr"], progress=False)
    report["cpu_seconds"] = time.process_time() - t0
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _run_jobs(fn, jobs: list[dict], workers: int) -> list:
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, jobs))


def plan_distill_experiment(exp: DistillExperiment, out_dir: Path) -> tuple[dict, list[dict], list[dict]]:
    """(run folder per (variant, seed), phase-1 jobs (baselines, teachers), phase-2 jobs (distilled))."""
    data = str(Path(exp.data_dir).resolve())
    runs = {}  # (variant, seed) -> run dir
    phase1: list[dict[str, Any]] = []
    phase2: list[dict[str, Any]] = []
    for seed in exp.seeds:
        student = {**exp.train, "seed": seed}
        for v in exp.variants:
            run_dir = out_dir / f"{v}_seed{seed}"
            runs[(v, seed)] = run_dir
            if v == "baseline":
                phase1.append({"kind": "student", "train": student, "data_dir": data, "run_dir": str(run_dir)})
            elif v.startswith("teacher_"):
                arch = v.removeprefix("teacher_")
                phase1.append({"kind": "teacher", "arch": arch, "data_dir": data, "run_dir": str(run_dir),
                               "train": {**exp.teachers.get(arch, {}), "seed": seed,
                                         "epochs": exp.train.get("epochs", 12),
                                         "steps_per_epoch": exp.train.get("steps_per_epoch", 100)}})
        for v in exp.variants:
            if not v.startswith("distill_"):
                continue
            used = BOTH if v == "distill_both" else (v.removeprefix("distill_"),)
            for k in used:
                if f"teacher_{k}" not in exp.variants:
                    raise ValueError(f"variant {v} needs teacher_{k} in the variants")
            teachers = [str(out_dir / f"teacher_{k}_seed{seed}" / "best.pt") for k in used]
            # The cache holds one draw per epoch, so the distilled student sees exactly the baseline's windows.
            train = {**student, "augment_draws": student.get("epochs", 12)} if exp.distill.get("cache") else student
            phase2.append({"kind": "distill", "train": train, "distill": {**exp.distill, "teachers": teachers},
                           "data_dir": data, "run_dir": str(runs[(v, seed)])})
    for job in phase1 + phase2:
        job["eval"] = {"out": str(Path(job["run_dir"]) / "eval"), "data_dir": data,
                       "eval_sets": list(exp.eval_sets), "max_fpr": exp.max_fpr}
    # Longest first (Wav2Vec2 teachers, then speech-embedding, then Conformers), so the cheap runs fill the
    # gaps at the end.
    phase1.sort(key=lambda j: {"wav2vec2": 0, "speech_embedding": 1, "conformer": 2}.get(j.get("arch", ""), 3))
    return runs, phase1, phase2


def distill_experiment(exp: DistillExperiment, out_dir: str | Path, workers: int = 1,
                       summarise_only: bool = False) -> dict:
    """Train and evaluate every variant for every seed; returns (and writes) results.json.

    ``summarise_only``: train nothing, tabulate the runs whose evaluation is finished (a partial table
    says how many seeds each row has)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (Path(exp.data_dir) / "manifest.csv").exists():
        raise FileNotFoundError(f"no data set at {exp.data_dir}: run `wakeword data build` (or `make demo`) first")
    (out_dir / "experiment.json").write_text(json.dumps(exp.__dict__, indent=2, default=list))
    runs, phase1, phase2 = plan_distill_experiment(exp, out_dir)
    if summarise_only:
        done = {k: json.loads((d / "eval" / "report.json").read_text()) for k, d in runs.items()
                if (d / "eval" / "report.json").exists()}
        results = summarise_experiment(exp, runs, done)
        (out_dir / "results_partial.json").write_text(json.dumps(results, indent=2))
        return results
    logger.info("training and evaluating %d baselines/teachers, then %d distilled students (%d workers)",
                len(phase1), len(phase2), workers)
    reports = _run_jobs(_train_eval_job, phase1, workers) + _run_jobs(_train_eval_job, phase2, workers)
    by_run = {job["run_dir"]: rep for job, rep in zip(phase1 + phase2, reports)}
    by_key = {key: by_run[str(d)] for key, d in runs.items()}
    results = summarise_experiment(exp, runs, by_key)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _metrics(report: dict, fa: tuple[float, ...]) -> dict[str, dict[str, float]]:
    out = {}
    for name, s in report["sets"].items():
        m = {"pauc": s["pauc"]}
        for f in fa:
            op = s["frr_at_fa_per_hour"].get(str(f)) or s["frr_at_fa_per_hour"].get(f"{f:g}")
            m[f"frr@{f:g}"] = op["frr"] if op else float("nan")
        out[name] = m
    return out


def summarise_experiment(exp: DistillExperiment, runs: dict, reports: dict) -> dict:
    """Mean and std over seeds of each variant's metrics per evaluation set."""
    rows = {}
    for v in exp.variants:
        seeds = [s for s in exp.seeds if (v, s) in reports]
        per_seed = [_metrics(reports[(v, s)], exp.fa_per_hour) for s in seeds]
        if not per_seed:
            continue
        params = None
        summ = runs[(v, exp.seeds[0])] / "train_summary.json"
        if summ.exists():
            params = json.loads(summ.read_text()).get("params")
        stats: dict[str, dict] = {}
        for set_name in per_seed[0]:
            for metric in per_seed[0][set_name]:
                vals = np.array([p[set_name][metric] for p in per_seed], dtype=float)
                stats.setdefault(set_name, {})[metric] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1))
                                                          if len(vals) > 1 else 0.0, "values": vals.tolist()}
        rows[v] = {"params": params, "metrics": stats, "seeds": seeds}
    return {"seeds": list(exp.seeds), "fa_per_hour": list(exp.fa_per_hour), "variants": rows}


def markdown(results: dict, command: str) -> str:
    variants = results["variants"]
    first = next(iter(variants.values()))["metrics"]
    sets = list(first)
    metrics = list(first[sets[0]])
    head = "| variant | params | seeds | " + " | ".join(f"{s}: {m}" for s in sets for m in metrics) + " |"
    lines = [head, "|" + "---|" * (3 + len(sets) * len(metrics))]
    for v, r in variants.items():
        cells = [f"{r['metrics'][s][m]['mean']:.3f} ± {r['metrics'][s][m]['std']:.3f}"
                 if len(r["metrics"][s][m]["values"]) > 1 else f"{r['metrics'][s][m]['mean']:.3f} (1 seed)"
                 for s in sets for m in metrics]
        seeds = ",".join(str(s) for s in r.get("seeds", results["seeds"]))
        lines.append(f"| {v} | {r['params'] or ''} | {seeds} | " + " | ".join(cells) + " |")
    return (f"Command: `{command}`\n\nMean ± std over seeds {results['seeds']}; pAUC is the normalised "
            f"partial AUC for FPR ≤ 0.1 (higher is better); frr@X is the false-reject rate at X false "
            f"accepts per hour (lower is better).\n\n" + "\n".join(lines) + "\n")


def write_results(out_dir: str | Path, title: str, body: str) -> Path:
    """Write an experiment's tables to ``out_dir/results.md`` (its own folder; docs/RESULTS.md is edited by people,
    quoting these files). Returns the path."""
    path = Path(out_dir) / "results.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{title}\n\n{body}")
    return path


# ------------------------------------------------------------------ one round of hard-negative mining
@dataclass(frozen=True)
class MiningExperiment:
    model: str  # the detector to improve (e.g. work/demo/run/best.pt)
    data_dir: str  # its data set (copied: the original manifest is not touched)
    eval_set: str  # evaluation-set YAML; its negatives minus the pool are the held-out negatives
    pool_globs: tuple[str, ...] = ()  # files (relative to the eval set's root) that form the mining pool
    top_k: int = 200  # candidates queued
    min_score: float = 0.5  # a false alarm = a rising crossing of this score
    epochs: int = 4  # fine-tuning epochs (mined run and control run alike)
    steps_per_epoch: int = 75
    seed: int = 0

    @classmethod
    def from_yaml(cls, path: str | Path) -> MiningExperiment:
        import yaml

        d = dict((yaml.safe_load(Path(path).read_text()) or {}).get("experiment", {}))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown experiment keys: {sorted(unknown)}")
        if "pool_globs" in d:
            d["pool_globs"] = tuple(d["pool_globs"])
        return cls(**d)


def mining_experiment(exp: MiningExperiment, out_dir: str | Path) -> dict:
    """Before / after one mining round, next to a control fine-tuned the same way without mined clips.

    The pool (``pool_globs``) is known negative speech, so every candidate is confirmed here (in the UI
    a person decides); the held-out negatives and the test split never enter the pool or training.
    """
    import os
    import shutil

    import yaml

    from wakeword.evaluation.evaluate import EvalSet, evaluate
    from wakeword.mining import miner
    from wakeword.mining.store import MiningStore
    from wakeword.runtime.detector import Detector

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load(Path(exp.eval_set).read_text())
    root = (Path(exp.eval_set).parent / spec.get("root", ".")).resolve()
    pool = sorted({str(p.resolve()) for g in exp.pool_globs for p in root.glob(g) if p.is_file()})
    if not pool:
        raise ValueError(f"the pool globs match no files under {root}")
    full = EvalSet.from_yaml(exp.eval_set)
    pool_set = set(pool)
    held = EvalSet(full.name + " (held-out: pool removed)", full.positives,
                   tuple(f for f in full.negatives if str(Path(f).resolve()) not in pool_set))
    for name, src in (("data_mined", exp.data_dir), ("data_control", exp.data_dir)):
        if not (out / name).exists():  # hard links: cheap, and injection only appends new files
            shutil.copytree(src, out / name, copy_function=os.link)
            (out / name / "manifest.csv").unlink()
            shutil.copyfile(Path(src) / "manifest.csv", out / name / "manifest.csv")
    store = MiningStore(out / "workspace")
    summary_path = out / "mining.json"
    if not summary_path.exists():
        pool_files = miner.build_pool(out / "data_mined", pool, eval_files=list(held.negatives) + list(held.positives),
                                      include_training_negatives=False)
        new = miner.mine(store, exp.model, pool_files, miner.MineConfig(top_k=exp.top_k, min_score=exp.min_score))
        store.decide([c.id for c in store.candidates(status="pending")], "confirmed")
        rows = miner.inject(store, out / "data_mined")
        summary_path.write_text(json.dumps({"pool_files": len(pool_files), "candidates": len(new),
                                            "injected": len(rows)}, indent=2))
    mined = json.loads(summary_path.read_text())
    runs = {"before": exp.model}
    for name, data in (("control (fine-tuned, no mined clips)", "data_control"), ("after mining", "data_mined")):
        run_dir = out / data.replace("data_", "run_")
        if not (run_dir / "train_summary.json").exists():
            miner.retrain(exp.model, out / data, run_dir, epochs=exp.epochs, steps_per_epoch=exp.steps_per_epoch)
        runs[name] = str(run_dir / "best.pt")
    table = {}
    for name, ckpt in runs.items():
        ev_dir = out / "eval" / name.split(" ")[0]
        rep_path = ev_dir / "report.json"
        if rep_path.exists():
            rep = json.loads(rep_path.read_text())
        else:
            rep = evaluate(Detector.load(ckpt), [EvalSet.from_split(out / "data_control", "test"), held], ev_dir,
                           progress=False)
        table[name] = {s: {"pauc": r["pauc"], "threshold": r["threshold"], "fa_per_hour@thr": r["fa_per_hour_at_threshold"],
                           "frr@thr": r["frr_at_threshold"],
                           "frr@0.5FA/h": r["frr_at_fa_per_hour"]["0.5"]["frr"],
                           "frr@1FA/h": r["frr_at_fa_per_hour"]["1.0"]["frr"], "negative_hours": r["negative_hours"]}
                       for s, r in rep["sets"].items()}
    result = {"mining": mined, "pool_globs": list(exp.pool_globs), "runs": runs, "table": table}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


def mining_markdown(result: dict, command: str) -> str:
    m = result["mining"]
    lines = [f"Command: `{command}`", "",
             (f"Pool: {m['pool_files']} files ({', '.join(result['pool_globs'])}); {m['candidates']} candidates "
             f"queued, all confirmed (the pool is known negative speech), {m['injected']} injected as hard "
             "negatives. The held-out negatives are the development set's negatives minus the pool."), "",
             "| model | set | pAUC | its threshold | FA/h @thr | FRR @thr | FRR @0.5 FA/h | FRR @1 FA/h | negative hours |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, sets in result["table"].items():
        for s, r in sets.items():
            lines.append(f"| {name} | {s} | {r['pauc']:.3f} | {r['threshold']:.4g} | {r['fa_per_hour@thr']:.2f} | {r['frr@thr']:.3f} | "
                         f"{r['frr@0.5FA/h']:.3f} | {r['frr@1FA/h']:.3f} | {r['negative_hours']:.2f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ recipe ablation on real voices
def deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; nested dicts are merged key by key, anything else replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True)
class AblationExperiment:
    """Each training lever switched on or off against the default recipe, over seeds, measured on real
    recordings with the `wakeword bench` protocol (clean and with real noise)."""
    data_dir: str  # a built data folder (synthetic; says in its data_config whether real clips went in)
    seeds: tuple[int, ...] = (0, 1, 2)
    train: dict = field(default_factory=dict)  # the default recipe's TrainConfig (seed set per run)
    variants: dict = field(default_factory=lambda: {"default": {}})  # name -> TrainConfig overrides
    sets: tuple[str, ...] = ("configs/eval/real_dev_computer.yaml",)  # bench set YAMLs (real recordings)
    snr_db: tuple = (None, 10.0)  # bench conditions: None = clean
    fa_per_hour: float = 0.5  # the operating point of the table

    @classmethod
    def from_yaml(cls, path: str | Path) -> AblationExperiment:
        import yaml

        d = dict((yaml.safe_load(Path(path).read_text()) or {}).get("experiment", {}))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown experiment keys: {sorted(unknown)}")
        for k in ("seeds", "sets", "snr_db"):
            if k in d:
                d[k] = tuple(d[k])
        exp = cls(**d)
        from wakeword.evaluation.evaluate import FA_TARGETS

        if exp.fa_per_hour not in FA_TARGETS:
            raise ValueError(f"fa_per_hour must be one of the reported operating points {list(FA_TARGETS)}")
        if "default" not in exp.variants:
            raise ValueError("the variants need a 'default' entry (the recipe every lever is compared with)")
        from wakeword.dataset.augment import AugmentConfig
        from wakeword.features.specaugment import SpecAugmentConfig
        from wakeword.training.fit import TrainConfig

        for name, over in exp.variants.items():  # fail now, not after an hour of training
            over = dict(over or {})
            try:
                spec = over.pop("distill", None)
                if spec is not None:
                    _check_distill_variant(name, spec, exp.variants)
                if not isinstance(over.pop("data_dir", ""), str):
                    raise ValueError("data_dir must be a path to a built data folder")
                cfg = TrainConfig.from_dict(deep_merge(exp.train, over))
                AugmentConfig.from_dict(cfg.augment)
                SpecAugmentConfig(**cfg.specaugment)
                if cfg.arch == "mobilenetv3":
                    from wakeword.models.mobilenetv3 import StudentConfig

                    StudentConfig(**cfg.model)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"variant '{name}': {exc}") from exc
        return exp


DISTILL_VARIANT_KEYS = ("teacher_variant", "layers", "weight")  # besides DistillConfig's own keys (no teachers)


def _check_distill_variant(name: str, spec: dict, variants: dict) -> None:
    """A variant with ``distill: {teacher_variant: V, layers, weight, ...DistillConfig}`` is distilled from
    variant V's run at the same seed (V trains first, in the experiment's first phase)."""
    if not isinstance(spec, dict) or "teacher_variant" not in spec:
        raise ValueError("distill needs teacher_variant: the variant whose run (same seed) teaches this one")
    teacher = spec["teacher_variant"]
    if teacher not in variants or teacher == name:
        raise ValueError(f"distill teacher_variant '{teacher}' is not another variant; variants: {sorted(variants)}")
    if "distill" in (variants[teacher] or {}):
        raise ValueError(f"distill teacher_variant '{teacher}' is itself distilled (one level only)")
    if "teachers" in spec:
        raise ValueError("distill: give teacher_variant, not teachers (the checkpoint is the teacher variant's run)")
    _distill_config(spec, "teacher.pt")  # every other key is checked now


def _distill_config(spec: dict, checkpoint: str) -> dict:
    from wakeword.training.distill import DistillConfig

    teacher = {"checkpoint": checkpoint, "layers": list(spec.get("layers", ())), "weight": spec.get("weight", 1.0)}
    rest = {k: v for k, v in spec.items() if k not in DISTILL_VARIANT_KEYS}
    return DistillConfig.from_dict({**rest, "teachers": [teacher]}).to_dict()


def _condition(snr) -> str:
    return "clean" if snr is None else f"snr{snr:g}"


def _ablation_job(job: dict) -> dict:
    """Train (or resume) one run, then bench it on every set and condition; resumable at each step."""
    import torch

    from wakeword.evaluation.bench import BenchConfig, run_bench
    from wakeword.evaluation.detectors import load_detector
    from wakeword.evaluation.evaluate import EvalSet
    from wakeword.training.fit import TrainConfig, drop_new_defaults

    summary = Path(job["run_dir"]) / "train_summary.json"
    if summary.exists():  # a finished run is reused only if it was trained with this variant's config
        saved_all = json.loads((Path(job["run_dir"]) / "config.json").read_text())
        saved = saved_all["train"]
        wanted = json.loads(json.dumps(TrainConfig.from_dict(job["train"]).to_dict()))
        distilled_differently = json.loads(json.dumps(job.get("distill"))) != saved_all.get("distill")
        if saved != drop_new_defaults(saved, wanted) or distilled_differently:  # a field added since counts at its default
            raise ValueError(f"{job['run_dir']} holds a run trained with another config; remove it or use "
                             "another --out folder")
    checkpoint = _train_job(job)
    torch.set_num_threads(1)
    out = {}
    for snr in job["snr_db"]:
        d = Path(job["run_dir"]) / "bench" / _condition(snr)
        stale = False
        if (d / "bench.json").exists():
            old = json.loads((d / "bench.json").read_text())
            stale = (old["config"] != asdict(BenchConfig(snr_db=snr))
                     or sorted(old["sets"]) != sorted(EvalSet.from_yaml(y).name for y in job["sets"]))
        if stale or not (d / "bench.json").exists():
            # heads on a frozen embedding share its embeddings of the bench audio (computed by the first job)
            run_bench([load_detector(f"model={checkpoint}", embedding_cache=Path(job["run_dir"]).parent / "embeddings")],
                      [EvalSet.from_yaml(s) for s in job["sets"]],
                      BenchConfig(snr_db=snr), d, progress=False)
        out[_condition(snr)] = json.loads((d / "bench.json").read_text())
    return out


def ablation_experiment(exp: AblationExperiment, out_dir: str | Path, workers: int = 1,
                        summarise_only: bool = False) -> dict:
    """Train and bench every (variant, seed); mean and std of FRR at the operating point and AUT."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = Path(exp.data_dir)
    folders = _variant_data(exp)  # a variant may train on another data folder (a data lever)
    for folder in {data, *folders.values()}:
        if not (folder / "manifest.csv").exists():
            raise FileNotFoundError(f"no data set at {folder}: run `wakeword data build` (or `make demo`) first")
    (out_dir / "experiment.json").write_text(json.dumps(exp.__dict__, indent=2, default=list))
    jobs = []
    # Seed-major, so an experiment stopped early has every variant at the same seeds.
    for seed in exp.seeds:
        for name, over in exp.variants.items():
            over = dict(over or {})
            spec = over.pop("distill", None)
            over.pop("data_dir", None)
            train = deep_merge(exp.train, {**over, "seed": seed})
            job = {"kind": "student", "train": train, "data_dir": str(folders.get(name, data).resolve()),
                   "variant": name, "seed": seed, "run_dir": str(out_dir / f"{name}_seed{seed}"), "sets": list(exp.sets),
                   "snr_db": list(exp.snr_db)}
            if spec is not None:  # distilled from another variant's run at this seed (trained in phase 1)
                teacher = out_dir / f"{spec['teacher_variant']}_seed{seed}" / "best.pt"
                job.update(kind="distill", distill=_distill_config(spec, str(teacher)))
            jobs.append(job)
    if summarise_only:
        done = {}
        for j in jobs:
            conds = {_condition(s): Path(j["run_dir"]) / "bench" / _condition(s) / "bench.json" for s in exp.snr_db}
            if all(p.exists() for p in conds.values()):
                done[(j["variant"], j["seed"])] = {c: json.loads(p.read_text()) for c, p in conds.items()}
    else:
        # Teachers before the runs they teach; within a phase longest first, so short runs fill the gaps at the end.
        order = sorted(jobs, key=lambda j: (j["kind"] == "distill",
                                            -j["train"].get("epochs", 0) * j["train"].get("steps_per_epoch", 0)))
        phase1 = [j for j in order if j["kind"] != "distill"]
        phase2 = [j for j in order if j["kind"] == "distill"]
        reports = _run_jobs(_ablation_job, phase1, workers) + _run_jobs(_ablation_job, phase2, workers)
        done = {(j["variant"], j["seed"]): r for j, r in zip(order, reports)}
    results = summarise_ablation(exp, done, data)
    (out_dir / ("results_partial.json" if summarise_only else "results.json")).write_text(json.dumps(results, indent=2))
    return results


def _variant_data(exp: AblationExperiment) -> dict[str, Path]:
    """Variants that train on another data folder than the experiment's (``data_dir`` in their overrides)."""
    return {name: Path(over["data_dir"]) for name, over in exp.variants.items() if (over or {}).get("data_dir")}


def summarise_ablation(exp: AblationExperiment, done: dict, data_dir: Path) -> dict:
    fa = str(float(exp.fa_per_hour))  # the key the bench report uses
    dcfgs = []
    for folder in {data_dir, *_variant_data(exp).values()}:
        try:
            dcfgs.append(json.loads((folder / "data_config.json").read_text()))
        except (OSError, ValueError):
            pass
    rows = {}
    for name, over in exp.variants.items():
        seeds = [s for s in exp.seeds if (name, s) in done]
        cells: dict = {}
        for s in seeds:
            for cond, rep in done[(name, s)].items():
                for set_name, entry in rep["sets"].items():
                    r = entry["detectors"]["model"]
                    c = cells.setdefault(f"{set_name} ({cond})", {"frr": [], "aut": [], "pauc": [], "fa_default": [],
                                                                  "frr_default": [], "frr_0.1": [], "frr_1.0": []})
                    c["frr"].append(r["frr_at_fa_per_hour"][fa]["frr"])
                    for other in ("0.1", "1.0"):
                        if other in r["frr_at_fa_per_hour"]:
                            c[f"frr_{other}"].append(r["frr_at_fa_per_hour"][other]["frr"])
                    if "frr_at_default" in r:
                        c["frr_default"].append(r["frr_at_default"])
                    c["aut"].append(r["aut_frr_fa_0_1"])
                    c["pauc"].append(r["pauc"])
                    c["fa_default"].append(r["fa_per_hour_at_default"])
        stats = {k: {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                         "values": v} for m, v in c.items() if v} for k, c in cells.items()}
        rows[name] = {"overrides": over or {}, "seeds": seeds, "metrics": stats}
    return {"fa_per_hour": exp.fa_per_hour, "seeds": list(exp.seeds), "train": exp.train, "variants": rows,
            "data_dir": str(data_dir), "real_positives_in_training": any(d.get("positive_dirs") for d in dcfgs),
            "real_audio_in_training": any(d.get("positive_dirs") or d.get("negative_dirs") or d.get("noise_dirs")
                                          for d in dcfgs) or any(
                t.get("noise_dirs") or t.get("rir_dirs") for t in [exp.train, *(v or {} for v in exp.variants.values())]),
            # recordings of system packages (real speech in other languages, game and education voices)
            "packaged_recordings_in_training": any(d.get("optional_negative_dirs") for d in dcfgs)}


def ablation_markdown(results: dict, command: str) -> str:
    rows = results["variants"]
    conds = list(next((r["metrics"] for r in rows.values() if r["metrics"]), {}))
    fa = f"{results['fa_per_hour']:g}"
    cols = [("frr_0.1", "FRR@0.1"), ("frr", f"FRR@{fa}"), ("frr_1.0", "FRR@1"), ("aut", "AUT"),
            ("fa_default", "FA/h @default"), ("frr_default", "FRR @default"), ("pauc", "pAUC")]
    head = "| variant | condition | seeds | " + " | ".join(c for _, c in cols) + " |"
    lines = [head, "|" + "---|" * (3 + len(cols))]
    base = rows.get("default", {}).get("metrics", {})
    for cond in conds:
        for name, r in rows.items():
            cells = []
            for m, _ in cols:
                st = r["metrics"].get(cond, {}).get(m)
                if not st:
                    cells.append("–")
                    continue
                cell = f"{st['mean']:.3f} ± {st['std']:.3f}" if len(st["values"]) > 1 else f"{st['mean']:.3f} (1 seed)"
                b = base.get(cond, {}).get(m)
                if m == "frr" and name != "default" and b:
                    common = [i for i in r["seeds"] if i in rows["default"]["seeds"]]
                    if common:  # compared on the seeds both have
                        mine = np.mean([st["values"][r["seeds"].index(i)] for i in common])
                        theirs = np.mean([b["values"][rows["default"]["seeds"].index(i)] for i in common])
                        cell += f" ({mine - theirs:+.3f})"
                cells.append(cell)
            lines.append(f"| {name} | {cond} | {','.join(map(str, r['seeds']))} | " + " | ".join(cells) + " |")
    changes = "\n".join(f"- `{name}`: `{json.dumps(r['overrides'])}`" for name, r in rows.items() if r["overrides"])
    real = ("real recordings went into training" if results["real_audio_in_training"]
            else "no real recording of the user's went into training, only recorded voices of system packages as "
                 "negatives (none of them in the development sets)" if results.get("packaged_recordings_in_training")
            else "no real recording went into training (synthetic speech, music and noise only)")
    return (f"Command: `{command}`\n\nMean ± std over seeds {results['seeds']} (in brackets: difference from "
            f"the default recipe). FRR@{fa} FA/h = false-reject rate at {fa} false accepts per hour; AUT = area "
            f"under the FRR-vs-FA/h curve on [0, 1] FA/h (both lower is better); pAUC = clip-level partial AUC "
            f"for FPR <= 0.1 (higher is better); FA/h and FRR @default: at the model's own default threshold; all from the "
            f"`wakeword bench` protocol. Data: `{results['data_dir']}`; {real}.\n\n" + "\n".join(lines) + "\n\n"
            f"Variants (changes from the default):\n{changes}\n")
