"""The sequential multi-objective study: create or continue, run trials one at a time, resume after a
kill, show the Pareto front, export a trial's model.

Objectives: maximise validation pAUC (the one metrics module, FPR <= train.max_fpr) and minimise latency
(median ms of one 1 s window at batch 1 on one CPU thread, ONNX Runtime, on the trial's exported
student) or, with ``latency: macs``, the deterministic multiply-accumulates per window (millions).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from wakeword.hpo.pbt import PBTConfig, explore, hypervolume_2d, pick_parent
from wakeword.hpo.space import DEFAULT_SPACE, Param, apply, default_params, parse_space, suggest

logger = logging.getLogger(__name__)

OBJECTIVES = {"measured": ("val_pauc", "latency_ms"), "macs": ("val_pauc", "macs_m")}
DIRECTIONS: tuple[Literal["maximize"], Literal["minimize"]] = ("maximize", "minimize")


@dataclass(frozen=True)
class HpoConfig:
    data_dir: str  # a built data folder
    study_dir: str = "work/hpo"  # trial folders (and the default SQLite file) live here
    study_name: str = "wakeword"
    storage: str = ""  # "" -> sqlite:///<study_dir>/study.db; any Optuna RDB URL is used unchanged
    seed: int = 0  # seeds the NSGA-II sampler and the PBT scheduler
    latency: str = "measured"  # "measured" (ms, ONNX Runtime, 1 thread) | "macs" (deterministic)
    latency_reps: int = 100  # timed runs per trial (after 10 warm-up runs)
    population: int = 8  # NSGA-II population size
    train: dict = field(default_factory=dict)  # base TrainConfig; trial values override
    distill: dict | None = None  # base DistillConfig (with teachers) -> distillation is searched too
    space: dict = field(default_factory=lambda: dict(DEFAULT_SPACE))  # name -> distribution
    pbt: dict = field(default_factory=dict)  # PBTConfig overrides
    enqueue_default: bool = True  # trial 0 = the base configuration, the reference to beat

    # (low, high, low included); checked with the types on load: wakeword.validation
    LIMITS: ClassVar[dict[str, tuple]] = {"latency_reps": (1, None, True), "population": (2, None, True)}

    @classmethod
    def from_dict(cls, d: dict) -> HpoConfig:
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown hpo config keys: {sorted(set(d) - known)}; known: {sorted(known)}")
        from wakeword.validation import ConfigError, check_config

        problems = check_config(cls, d, "hpo")
        if problems:
            raise ConfigError("hpo config", problems)
        cfg = cls(**d)
        cfg.check()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> HpoConfig:
        from wakeword.validation import ConfigError, load_yaml_mapping

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no hpo config at {p}")
        doc = load_yaml_mapping(p, "hpo config")
        part = doc.get("hpo", doc)
        if not isinstance(part, dict):
            raise ConfigError(f"hpo config {p}", [f"hpo = {part!r}: expected a mapping of keys to values"])
        return cls.from_dict(dict(part))

    def check(self) -> list[Param]:
        if self.latency not in OBJECTIVES:
            raise ValueError(f"latency must be one of {sorted(OBJECTIVES)}, not '{self.latency}'")
        PBTConfig.from_dict(self.pbt)
        from wakeword.training.fit import TrainConfig

        TrainConfig.from_dict(self.train)
        if self.distill is not None:
            from wakeword.training.distill import DistillConfig

            DistillConfig.from_dict(self.distill)
        return parse_space(self.space, with_teachers=self.distill is not None)

    @property
    def objectives(self) -> tuple[str, str]:
        return OBJECTIVES[self.latency]

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.study_dir).resolve() / 'study.db'}"


# ------------------------------------------------------------------ one trial
def measure_latency_ms(onnx_path: str | Path, window_samples: int, reps: int = 100, warmup: int = 10) -> float:
    """Median wall time of one window at batch 1 on one CPU thread (ONNX Runtime)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).standard_normal((1, window_samples)) * 0.1).astype(np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def run_trial(cfg: HpoConfig, params: dict, trial_dir: Path, init_from: str = "", budget_frac: float = 1.0,
              progress: bool = False) -> dict:
    """Train one configuration (resumable), export it, measure both objectives. Writes trial.json."""
    from wakeword.export.graph import export_onnx
    from wakeword.models.registry import count_macs
    from wakeword.training.checkpoint import load_model
    from wakeword.training.fit import TrainConfig, fit

    t0 = time.time()
    train, distill_d = apply(params, cfg.train, cfg.distill)
    if init_from:
        train["init_from"] = init_from
        epochs = train.get("epochs", TrainConfig().epochs)
        train["epochs"] = max(1, int(round(epochs * budget_frac)))
    tcfg = TrainConfig.from_dict(train)
    run_dir = trial_dir / "run"
    if distill_d is not None:
        from wakeword.training.distill import DistillConfig, distill

        summary = distill(tcfg, DistillConfig.from_dict(distill_d), cfg.data_dir, run_dir, progress=progress)
    else:
        summary = fit(tcfg, cfg.data_dir, run_dir, progress=progress)
    ckpt = run_dir / "best.pt"
    model = load_model(ckpt)
    onnx_path = export_onnx(model, trial_dir / "model.onnx")
    import torch

    macs = count_macs(model.backbone, model.frontend(torch.zeros(1, model.feat.window_samples)))
    record = {
        "params": params, "train": tcfg.to_dict(), "distill": distill_d, "checkpoint": str(ckpt),
        "onnx": str(onnx_path), "val_pauc": float(summary["best"]["val_pauc"]), "macs_m": macs / 1e6,
        "params_count": summary["params"], "init_from": init_from,
    }
    if cfg.latency == "measured":
        record["latency_ms"] = measure_latency_ms(onnx_path, model.feat.window_samples, cfg.latency_reps)
    record["seconds"] = round(time.time() - t0, 1)
    (trial_dir / "trial.json").write_text(json.dumps(record, indent=2))
    return record


# ------------------------------------------------------------------ the study
def _open(cfg: HpoConfig, resume: bool):
    import optuna

    url = cfg.storage_url()
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as exc:
        raise ValueError(f"cannot open the study storage '{url}': {exc}") from exc
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
    exists = cfg.study_name in names
    if exists and not resume:
        raise ValueError(f"study '{cfg.study_name}' already exists in {url}; pass --resume to continue it "
                         "(or choose another --study-name / folder)")
    if not exists and resume:
        raise ValueError(f"no study '{cfg.study_name}' in {url} to resume")
    sampler = optuna.samplers.NSGAIISampler(population_size=cfg.population, seed=cfg.seed)
    if exists:
        study = optuna.load_study(study_name=cfg.study_name, storage=storage, sampler=sampler)
        # A resumed process must not replay the random draws its predecessor already used (the sampler's
        # RNG restarts from its seed): seed it from the seed and the trials so far, so a resumed study
        # is still reproducible from its history but samples new configurations.
        resumed_seed = int(np.random.SeedSequence([cfg.seed, len(study.trials)]).generate_state(1)[0])
        study.sampler = optuna.samplers.NSGAIISampler(population_size=cfg.population, seed=resumed_seed)
        if [d.name.lower() for d in study.directions] != list(DIRECTIONS) or \
                tuple(study.user_attrs.get("objectives", ())) != cfg.objectives:
            raise ValueError(f"study '{cfg.study_name}' optimises {study.user_attrs.get('objectives')} "
                             f"({[d.name.lower() for d in study.directions]}), not {list(cfg.objectives)}")
        return study
    study = optuna.create_study(study_name=cfg.study_name, storage=storage, sampler=sampler,
                                directions=list(DIRECTIONS))
    study.set_user_attr("objectives", list(cfg.objectives))
    study.set_user_attr("config", json.loads(json.dumps(asdict(cfg))))
    if cfg.enqueue_default:
        default = default_params(cfg.check(), cfg.train, cfg.distill)
        if default is None:
            logger.warning("the base configuration lies outside the search space: no default-configuration trial")
        else:
            study.enqueue_trial(default, user_attrs={"default_config": True})
    return study


def _recover_interrupted(study) -> int:
    """Trials left RUNNING by a killed process: mark failed, queue their configuration again."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        attrs = {k: v for k, v in t.user_attrs.items() if k not in ("trial_dir", "started")}
        study.enqueue_trial(t.params, user_attrs={**attrs, "retry_of": t.number})
        logger.warning("trial %d was interrupted: marked failed, its configuration queued again", t.number)
        n += 1
    return n


def _maybe_enqueue_child(study, cfg: HpoConfig, space: list[Param], pbt: PBTConfig) -> None:
    from optuna.trial import TrialState

    if not pbt.enabled or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return
    number = len(study.trials)  # the number the next trial gets
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if Path(t.user_attrs.get("checkpoint", "")).is_file()]
    if len(done) < pbt.warmup or (number - pbt.warmup) % pbt.interval != 0:
        return
    rng = np.random.default_rng([cfg.seed, number])
    values = np.array([t.values for t in done], dtype=float)
    parent = done[pick_parent(values, (True, False), pbt.top_frac, rng)]
    child, mutations = explore(parent.params, space, pbt, rng)
    study.enqueue_trial(child, user_attrs={
        "pbt_parent": parent.number, "generation": int(parent.user_attrs.get("generation", 0)) + 1,
        "mutations": mutations, "init_from": parent.user_attrs["checkpoint"]})
    logger.info("PBT: trial %d forks trial %d (mutations: %s)", number, parent.number, mutations or "none")


def run_study(cfg: HpoConfig, n_trials: int, resume: bool = False, progress: bool = True) -> dict:
    """Run until the study holds ``n_trials`` finished (complete) trials. Returns a short summary."""
    import optuna
    from optuna.trial import TrialState

    space = cfg.check()  # every error before anything is created
    pbt = PBTConfig.from_dict(cfg.pbt)
    if n_trials < 1:
        raise ValueError("--trials must be at least 1")
    if not (Path(cfg.data_dir) / "manifest.csv").exists():
        raise FileNotFoundError(f"no data set at {cfg.data_dir}: run `wakeword data build` first")
    if not cfg.storage:
        Path(cfg.study_dir).mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open(cfg, resume)
    Path(cfg.study_dir).mkdir(parents=True, exist_ok=True)
    _recover_interrupted(study)
    failures = 0
    from tqdm import tqdm

    bar = tqdm(total=n_trials, desc="trials", disable=not progress)
    while True:
        n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        bar.n = n_done
        bar.refresh()
        if n_done >= n_trials:
            break
        _maybe_enqueue_child(study, cfg, space, pbt)
        trial = study.ask()
        params = suggest(trial, space)
        trial_dir = Path(cfg.study_dir) / "trials" / f"trial_{trial.number:04d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("trial_dir", str(trial_dir))
        trial.set_user_attr("started", time.strftime("%Y-%m-%dT%H:%M:%S"))
        handler = logging.FileHandler(trial_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        pkg_logger = logging.getLogger("wakeword")
        old_level = pkg_logger.level
        pkg_logger.addHandler(handler)
        if pkg_logger.getEffectiveLevel() > logging.INFO:
            pkg_logger.setLevel(logging.INFO)  # the trial log always holds the training progress
        try:
            init_from = trial.user_attrs.get("init_from", "")
            rec = run_trial(cfg, params, trial_dir, init_from=init_from,
                            budget_frac=pbt.budget_frac if init_from else 1.0, progress=False)
        except Exception as exc:  # a bad configuration must not end the study
            logger.exception("trial %d failed", trial.number)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            failures += 1
            if failures >= 3:
                raise RuntimeError(f"3 trials failed in a row; last error: {exc}") from exc
            continue
        finally:
            pkg_logger.removeHandler(handler)
            pkg_logger.setLevel(old_level)
            handler.close()
        failures = 0
        for k in ("checkpoint", "onnx", "seconds", "macs_m", "params_count"):
            trial.set_user_attr(k, rec[k])
        trial.set_user_attr("log", str(trial_dir / "train.log"))
        study.tell(trial, [rec[o] for o in cfg.objectives])
        logger.info("trial %d: val pAUC %.4f, %s %.4g (%.0f s)", trial.number, rec["val_pauc"],
                    cfg.objectives[1], rec[cfg.objectives[1]], rec["seconds"])
    bar.close()
    return {"study": cfg.study_name, "storage": cfg.storage_url(), "complete": n_done,
            "pareto": [t.number for t in study.best_trials]}


# ------------------------------------------------------------------ reading a study back
def load_study(study_dir: str | Path = "work/hpo", study_name: str = "wakeword", storage: str = ""):
    import optuna

    url = storage or f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"
    if not storage and not (Path(study_dir) / "study.db").exists():
        raise FileNotFoundError(f"no study in {study_dir} (no study.db): run `wakeword hpo run` first")
    try:
        return optuna.load_study(study_name=study_name, storage=url)
    except Exception as exc:
        raise ValueError(f"cannot load study '{study_name}' from {url}: {exc}") from exc


def hypervolume_history(study, ref: tuple[float, float] | None = None) -> tuple[list[int], list[float], tuple]:
    """Hypervolume of the finished trials after each trial. ref defaults to (pAUC 0, 1.1 x worst cost)."""
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        return [], [], ref or (0.0, 0.0)
    vals = np.array([t.values for t in done], dtype=float)
    ref = ref or (0.0, float(vals[:, 1].max()) * 1.1)
    xs, hv = [], []
    for i in range(len(done)):
        xs.append(done[i].number)
        hv.append(hypervolume_2d(vals[: i + 1], ref, (True, False)))
    return xs, hv, ref


def show(study, out_dir: str | Path) -> dict:
    """Pareto table (returned and written as pareto.md) and plots: pareto.png, pareto.html,
    hypervolume.png, lineage.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = study.user_attrs.get("objectives", ["objective 0", "objective 1"])
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        raise ValueError("the study has no finished trials yet")
    front = {t.number for t in study.best_trials}
    rows = []
    for t in sorted(study.best_trials, key=lambda t: t.values[1]):
        rows.append({"trial": t.number, names[0]: round(t.values[0], 4), names[1]: round(t.values[1], 4),
                     "generation": t.user_attrs.get("generation", 0), "parent": t.user_attrs.get("pbt_parent"),
                     "params": t.params})
    lines = [f"| trial | {names[0]} | {names[1]} | PBT generation | parent | parameters |", "|---|---|---|---|---|---|"]
    for r in rows:
        p = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        lines.append(f"| {r['trial']} | {r[names[0]]} | {r[names[1]]} | {r['generation']} | "
                     f"{'' if r['parent'] is None else r['parent']} | {p} |")
    table = "\n".join(lines) + "\n"
    (out / "pareto.md").write_text(table)

    vals = np.array([t.values for t in done])
    child = np.array(["pbt_parent" in t.user_attrs for t in done])
    on_front = np.array([t.number in front for t in done])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(vals[~child, 1], vals[~child, 0], c="tab:blue", alpha=0.6, label="sampled (NSGA-II)")
    if child.any():
        ax.scatter(vals[child, 1], vals[child, 0], c="tab:orange", marker="^", alpha=0.8, label="PBT child")
    fr = vals[on_front]
    fr = fr[np.argsort(fr[:, 1])]
    ax.plot(fr[:, 1], fr[:, 0], "k--", lw=1)
    ax.scatter(fr[:, 1], fr[:, 0], facecolors="none", edgecolors="k", s=90, label="Pareto front")
    for t in done:
        if t.number in front:
            ax.annotate(str(t.number), (t.values[1], t.values[0]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(names[1] + " (lower is better)")
    ax.set_ylabel(names[0] + " (higher is better)")
    ax.set_title(f"Pareto front: {study.study_name} ({len(done)} trials)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)

    fig_html = optuna.visualization.plot_pareto_front(study, target_names=list(names))
    fig_html.write_html(str(out / "pareto.html"), include_plotlyjs=True)  # inline: works offline

    xs, hv, ref = hypervolume_history(study)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.step(xs, hv, where="post")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_title(f"Hypervolume (reference {names[0]}={ref[0]:g}, {names[1]}={ref[1]:.3g})")
    fig.tight_layout()
    fig.savefig(out / "hypervolume.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    by_num = {t.number: t for t in done}
    ax.scatter([t.number for t in done], vals[:, 0], c=np.where(child, "tab:orange", "tab:blue"), s=25)
    for t in done:
        p = t.user_attrs.get("pbt_parent")
        if p is not None and p in by_num:
            ax.annotate("", xy=(t.number, t.values[0]), xytext=(p, by_num[p].values[0]),
                        arrowprops={"arrowstyle": "->", "color": "tab:orange", "lw": 1})
    ax.set_xlabel("trial")
    ax.set_ylabel(names[0])
    ax.set_title("PBT lineage (arrows: parent -> child that inherited its weights)")
    fig.tight_layout()
    fig.savefig(out / "lineage.png", dpi=120)
    plt.close(fig)
    default = next((t for t in done if t.user_attrs.get("default_config")), None)
    beats = []
    if default is not None:
        beats = [t.number for t in study.best_trials
                 if t.values[0] > default.values[0] and t.values[1] <= default.values[1]]
        table += (f"\nDefault configuration: trial {default.number}, {names[0]} {default.values[0]:.4f}, "
                  f"{names[1]} {default.values[1]:.4g}. Pareto trials with higher {names[0]} at equal or lower "
                  f"{names[1]}: {beats or 'none'}.\n")
    summary = {"trials": len(done), "pareto": rows, "hypervolume": hv[-1] if hv else 0.0,
               "default_trial": default.number if default else None,
               "default_values": list(default.values) if default else None, "beat_default": beats,
               "hypervolume_reference": list(ref), "table": table,
               "failed": len([t for t in study.trials if t.state == TrialState.FAIL])}
    (out / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "table"}, indent=2,
                                                 default=str))
    return summary


def compare(studies: dict, out_dir: str | Path, budget: int | None = None) -> dict:
    """Hypervolume of several studies over the same reference point and trial budget (e.g. with and
    without PBT): one plot (hypervolume_compare.png) and a table (compare.md). ``budget``: count only
    each study's first N finished trials (default: the smallest number any of them finished)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    if len(studies) < 2:
        raise ValueError("compare needs at least two studies")
    done = {k: [t for t in s.trials if t.state == TrialState.COMPLETE] for k, s in studies.items()}
    objectives = {tuple(s.user_attrs.get("objectives", ())) for s in studies.values()}
    if len(objectives) != 1:
        raise ValueError(f"the studies optimise different objectives: {sorted(objectives)}")
    n = budget or min(len(d) for d in done.values())
    if n == 0 or any(len(d) < n for d in done.values()):
        raise ValueError(f"every study needs {n or 1} finished trials: " + ", ".join(f"{k}: {len(d)}" for k, d in done.items()))
    done = {k: d[:n] for k, d in done.items()}
    worst = max(float(np.max([t.values[1] for t in d])) for d in done.values())
    ref = (0.0, 1.1 * worst)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    rows = {}
    for k, d in done.items():
        vals = np.array([t.values for t in d], dtype=float)
        hv = [hypervolume_2d(vals[: i + 1], ref, (True, False)) for i in range(len(d))]
        ax.step(np.arange(1, len(d) + 1), hv, where="post", label=k)
        front = [t for t in d if not any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1]
                                         and tuple(o.values) != tuple(t.values) for o in d)]
        rows[k] = {"trials": len(d), "hypervolume": hv[-1], "pareto_size": len(front),
                   "best_pauc": float(vals[:, 0].max()),
                   "pbt_children": sum("pbt_parent" in t.user_attrs for t in d),
                   "train_seconds": float(sum(t.user_attrs.get("seconds", 0.0) for t in d))}
    names = next(iter(objectives)) or ("objective 0", "objective 1")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("hypervolume")
    ax.set_title(f"Hypervolume at equal budget (reference {names[0]}={ref[0]:g}, {names[1]}={ref[1]:.3g})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hypervolume_compare.png", dpi=120)
    plt.close(fig)
    lines = ["| study | finished trials | PBT children | hypervolume | Pareto trials | best " + names[0] +
             " | training time (s) |", "|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['trials']} | {r['pbt_children']} | {r['hypervolume']:.4f} | {r['pareto_size']} | "
                     f"{r['best_pauc']:.4f} | {r['train_seconds']:.0f} |")
    table = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(table)
    result = {"budget": n, "reference": list(ref), "studies": rows, "table": table}
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    return result


def trial_checkpoint(study, number: int) -> str:
    from optuna.trial import TrialState

    trials = [t for t in study.trials if t.number == number]
    if not trials:
        raise ValueError(f"the study has no trial {number}")
    t = trials[0]
    if t.state != TrialState.COMPLETE or not t.user_attrs.get("checkpoint"):
        raise ValueError(f"trial {number} did not finish ({t.state.name}); choose a finished trial")
    if not Path(t.user_attrs["checkpoint"]).is_file():
        raise FileNotFoundError(f"trial {number}'s checkpoint is missing: {t.user_attrs['checkpoint']}")
    return t.user_attrs["checkpoint"]


__all__ = [
    "HpoConfig",
    "compare",
    "hypervolume_history",
    "load_study",
    "measure_latency_ms",
    "run_study",
    "run_trial",
    "show",
    "trial_checkpoint",
]
