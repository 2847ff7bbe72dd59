"""Thin command line: parse, build a config, call the library."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger("wakeword")


def _load_yaml(path: str | None, section: str) -> dict:
    from wakeword.validation import ConfigError, load_yaml_mapping

    from wakeword import configs

    if not path:
        return {}
    try:
        p = configs.resolve(path)  # a file or the name of a shipped recipe (demo, demo_student, demo_distilled)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
    doc = load_yaml_mapping(p)
    part = doc.get(section, {})
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise ConfigError(f"config {p}", [f"{section} = {part!r}: expected a mapping of keys to values"])
    return dict(part)


def _set(d: dict, key: str, value) -> None:
    if value is not None and value != () and value != []:
        d[key] = value


# ---------------------------------------------------------------- data
def cmd_data_build(a: argparse.Namespace) -> int:
    from wakeword.dataset.build import DataConfig, build

    d = _load_yaml(a.config, "data")
    _set(d, "phrase", a.phrase)
    _set(d, "seed", a.seed)
    _set(d, "n_positive", a.n_positive)
    _set(d, "n_adversarial", a.n_adversarial)
    _set(d, "n_speech", a.n_speech)
    _set(d, "n_noise", a.n_noise)
    _set(d, "n_words", a.n_words)
    _set(d, "n_music", a.n_music)
    _set(d, "engines", a.engines.split(",") if a.engines else None)
    _set(d, "workers", a.workers)
    for key, dirs in (("positive_dirs", a.positive_dir), ("negative_dirs", a.negative_dir), ("noise_dirs", a.noise_dir)):
        _set(d, key, list(d.get(key, [])) + list(dirs or []))
    report = build(DataConfig.from_dict(d), a.out, progress=not a.quiet)
    brief = {k: report[k] for k in ("phrase", "engines_used", "engines_missing", "clips", "hours", "skipped",
                                    "skipped_reasons", "cuts", "by_split_kind", "seconds")}
    print(json.dumps(brief, indent=2))
    print(f"manifest: {Path(a.out) / 'manifest.csv'}  report: {Path(a.out) / 'build_report.json'}")
    return 0


# ---------------------------------------------------------------- train
def _train_config(a: argparse.Namespace, recommended: bool = False):
    """The train config of a command; ``recommended``: with no --config (nor --arch / --init-from), the recommended
    recipe (`wakeword train`), else TrainConfig's defaults (the student, which `distill` trains)."""
    from wakeword.training.fit import TrainConfig

    if recommended and a.config is None and getattr(a, "arch", None) is None and not getattr(a, "init_from", None):
        from wakeword import configs

        d = _load_yaml(str(configs.shipped(configs.RECOMMENDED)), "train")  # no config: the recommended recipe (the demo's model)
    else:
        d = _load_yaml(a.config, "train")
        if getattr(a, "arch", None):
            if d.get("arch", a.arch) != a.arch:
                d.pop("model", None)  # the config's model parameters belong to its own architecture
            d["arch"] = a.arch
    for key in ("epochs", "steps_per_epoch", "batch_size", "lr", "seed", "device", "init_from"):
        _set(d, key, getattr(a, key, None))
    return TrainConfig.from_dict(d)


def cmd_train(a: argparse.Namespace) -> int:
    from wakeword.training.fit import fit

    summary = fit(_train_config(a, recommended=True), a.data, a.out, resume=not a.no_resume, progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


# ---------------------------------------------------------------- teachers and distillation
def cmd_teacher_train(a: argparse.Namespace) -> int:
    from wakeword.training.distill import teacher_config
    from wakeword.training.fit import fit

    d = _load_yaml(a.config, "train")
    for key in ("epochs", "steps_per_epoch", "batch_size", "lr", "seed", "device"):
        _set(d, key, getattr(a, key, None))
    model = dict(d.get("model", {}))
    _set(model, "preset", a.preset)
    _set(model, "onnx_dir" if a.kind == "speech_embedding" else "pretrained", a.pretrained)
    if a.freeze_feature_encoder:
        model["freeze_feature_encoder"] = True
    _set(model, "freeze_layers", a.freeze_layers)
    if a.kind != "wav2vec2" and (a.freeze_feature_encoder or a.freeze_layers):
        raise SystemExit("error: --freeze-* apply to --kind wav2vec2 only")
    if a.kind == "conformer" and a.pretrained:
        raise SystemExit("error: --pretrained applies to --kind wav2vec2 and speech_embedding only")
    d["model"] = model
    summary = fit(teacher_config(a.kind, d), a.data, a.out, resume=not a.no_resume, progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_distill(a: argparse.Namespace) -> int:
    from wakeword.training.distill import DistillConfig, distill

    dd = _load_yaml(a.config, "distill")
    if a.teacher:
        dd["teachers"] = list(a.teacher)
    _set(dd, "feature_loss", a.feature_loss)
    _set(dd, "weighting", a.weighting)
    if a.cache:
        dd["cache"] = True
    summary = distill(_train_config(a), DistillConfig.from_dict(dd), a.data, a.out, resume=not a.no_resume,
                      progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_experiment_distill(a: argparse.Namespace) -> int:
    from wakeword.experiments import DistillExperiment, distill_experiment, markdown, write_results_section

    exp = DistillExperiment.from_yaml(a.config)
    if a.seeds:
        exp = DistillExperiment(**{**exp.__dict__, "seeds": tuple(a.seeds)})
    results = distill_experiment(exp, a.out, workers=a.workers, summarise_only=a.summarise_only)
    command = ("wakeword " + " ".join(sys.argv[1:])) if a.command is None else a.command
    body = markdown(results, command)
    print(body)
    if a.results:
        write_results_section(a.results, body)
        print(f"written to {a.results}")
    return 0


def cmd_experiment_mining(a: argparse.Namespace) -> int:
    from wakeword.experiments import (
        MiningExperiment,
        mining_experiment,
        mining_markdown,
        write_results_section,
    )

    result = mining_experiment(MiningExperiment.from_yaml(a.config), a.out)
    body = mining_markdown(result, "wakeword " + " ".join(sys.argv[1:]))
    print(body)
    if a.results:
        write_results_section(a.results, body, title="## Hard-negative mining: one round", key="mining-experiment")
    return 0


def cmd_experiment_ablation(a: argparse.Namespace) -> int:
    from wakeword.experiments import (
        AblationExperiment,
        ablation_experiment,
        ablation_markdown,
        write_results_section,
    )

    exp = AblationExperiment.from_yaml(a.config)
    if a.seeds:
        exp = dataclasses.replace(exp, seeds=tuple(a.seeds))
    if a.variants:
        unknown = sorted(set(a.variants) - set(exp.variants))
        if unknown:
            raise ValueError(f"--variants: {unknown} not in {a.config} (it has {sorted(exp.variants)})")
        keep = {"default", *a.variants}  # the default is what every row is compared with
        exp = dataclasses.replace(exp, variants={k: v for k, v in exp.variants.items() if k in keep})
    results = ablation_experiment(exp, a.out, workers=a.workers, summarise_only=a.summarise_only)
    body = ablation_markdown(results, a.command or "wakeword " + " ".join(sys.argv[1:]))
    print(body)
    if a.results:
        write_results_section(a.results, body, title=a.title, key=f"ablation-{Path(a.config).stem}")
        print(f"written to {a.results}")
    return 0


# ---------------------------------------------------------------- hpo
def _hpo_config(a: argparse.Namespace):
    from wakeword.hpo.study import HpoConfig

    d = _load_yaml(a.config, "hpo") if a.config else {}
    for key in ("data_dir", "study_dir", "study_name", "storage", "latency", "seed"):
        _set(d, key, getattr(a, key, None))
    if getattr(a, "no_pbt", False):
        d["pbt"] = {**d.get("pbt", {}), "enabled": False}
    if "data_dir" not in d:
        raise SystemExit("error: give --data or data_dir in the config's hpo: section")
    return HpoConfig.from_dict(d)


def cmd_hpo_run(a: argparse.Namespace) -> int:
    from wakeword.hpo.study import run_study

    summary = run_study(_hpo_config(a), a.trials, resume=a.resume, progress=not a.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_hpo_show(a: argparse.Namespace) -> int:
    from wakeword.hpo.study import load_study, show

    study = load_study(a.study_dir, a.study_name, a.storage or "")
    out = a.out or str(Path(a.study_dir) / "report")
    summary = show(study, out)
    print(summary["table"])
    print(f"{summary['trials']} finished trials ({summary['failed']} failed); hypervolume {summary['hypervolume']:.4g}")
    print(f"plots: {out}/pareto.png, pareto.html, hypervolume.png, lineage.png")
    return 0


def cmd_hpo_compare(a: argparse.Namespace) -> int:
    from wakeword.hpo.study import compare, load_study

    studies = {}
    for spec in a.study:
        label, _, rest = spec.partition("=")
        folder, _, name = rest.partition(":")
        if not folder:
            raise ValueError(f"--study {spec}: expected LABEL=FOLDER[:STUDY_NAME]")
        studies[label] = load_study(folder, name or "wakeword")
    res = compare(studies, a.out, a.budget)
    print(res["table"])
    print(f"budget {res['budget']} finished trials each; plot: {Path(a.out) / 'hypervolume_compare.png'}")
    return 0


def cmd_hpo_export(a: argparse.Namespace) -> int:
    from wakeword.export import export_model
    from wakeword.hpo.study import load_study, trial_checkpoint

    ckpt = trial_checkpoint(load_study(a.study_dir, a.study_name, a.storage or ""), a.trial)
    report = export_model(ckpt, a.out, int8=a.int8, streaming=a.streaming, progress=not a.quiet)
    print(json.dumps(report, indent=2))
    return 0


# ---------------------------------------------------------------- mining
def cmd_mine(a: argparse.Namespace) -> int:
    from wakeword.defaults import is_audio
    from wakeword.mining import miner
    from wakeword.mining.store import MiningStore

    store = MiningStore(a.workspace)
    if a.mine_cmd == "register":
        n = 0
        for item in a.paths:
            p = Path(item)
            files = [f for f in sorted(p.rglob("*")) if is_audio(f)] if p.is_dir() else [p]
            for f in files:
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
        rows = miner.inject(store, data_dir)
        print(f"{len(rows)} confirmed clips added to the training split of {data_dir} as hard negatives")
    return 0


def _data_dir_of(model: str | None) -> str:
    from wakeword.training.checkpoint import load_checkpoint

    if not model:
        raise SystemExit("error: give --data (or --model, whose training data is used)")
    d = load_checkpoint(model).get("config", {}).get("data_dir")
    if not d:
        raise SystemExit(f"error: {model} does not record its data folder; give --data")
    return d


def cmd_serve(a: argparse.Namespace) -> int:
    import secrets

    import uvicorn

    from wakeword.ui.app import create_app
    from wakeword.ui.guard import is_loopback

    token = a.token
    if not is_loopback(a.host):
        token = token or secrets.token_urlsafe(18)
        print(f"WARNING: serving on {a.host}, reachable from other machines: anyone who can reach it and has "
              "the token can read the workspace's audio and start jobs. Prefer --host 127.0.0.1 (an SSH tunnel).",
              file=sys.stderr)
        if a.host in ("0.0.0.0", "::") and not a.allowed_host:
            print("WARNING: bound to every address: give the name clients use with --allowed-host NAME "
                  "(other Host headers are refused)", file=sys.stderr)
    app = create_app(a.workspace, host=a.host, allowed_host=tuple(a.allowed_host or ()),
                     allow_dirs=tuple(a.allow_dir or ()), token=token, max_jobs=a.max_jobs)
    url = f"http://{a.host}:{a.port}/" + (f"?token={token}" if token else "")
    print(f"wakeword UI on {url} (workspace {Path(a.workspace).resolve()})")
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0


# ---------------------------------------------------------------- eval
def _eval_sets(a: argparse.Namespace) -> list:
    from wakeword.evaluation.evaluate import EvalSet

    sets = []
    if a.data:
        sets.append(EvalSet.from_split(a.data, a.split))
    for y in a.set or []:
        sets.append(EvalSet.from_yaml(y))
    if a.positives or a.negatives:
        sets.append(EvalSet.from_dirs("folders", a.positives or [], a.negatives or []))
    if not sets:
        raise SystemExit("error: give --data (test split), --set YAML, or --positives/--negatives folders")
    return sets


def cmd_eval(a: argparse.Namespace) -> int:
    from wakeword.evaluation.evaluate import evaluate, markdown_table
    from wakeword.inference import Detector

    report = evaluate(Detector.load(a.model), _eval_sets(a), a.out, max_fpr=a.max_fpr, threshold=a.threshold,
                      progress=not a.quiet)
    print(markdown_table(report))
    print(f"report: {Path(a.out) / 'report.json'}  plots: {Path(a.out) / 'det.png'}, {Path(a.out) / 'roc.png'}")
    return 0


# ---------------------------------------------------------------- bench
def cmd_bench(a: argparse.Namespace) -> int:
    from wakeword import configs
    from wakeword.evaluation.bench import BenchConfig, run_bench
    from wakeword.evaluation.detectors import load_detector
    from wakeword.evaluation.evaluate import EvalSet

    sets = [EvalSet.from_split(a.data, a.split)] if a.data else []
    sets += [EvalSet.from_yaml(y) for y in a.set or []]
    for name in a.preset or []:
        sets.append(EvalSet.from_yaml(configs.eval_preset(name)))
    if a.positives or a.negatives:
        sets.append(EvalSet.from_dirs("folders", a.positives or [], a.negatives or [], a.noise or [], a.phrase))
    if not sets:
        raise SystemExit("error: give --data, --preset real-dev, --set YAML, or --positives/--negatives [--noise] "
                         "folders")
    given = {"snr_db": a.snr, "lead_s": a.lead, "tail_s": a.tail, "refractory_s": a.refractory}
    cfg = BenchConfig(**{k: v for k, v in given.items() if v is not None})  # unset: the scoring protocol's
    detectors = [load_detector(spec) for spec in a.detector]
    report = run_bench(detectors, sets, cfg, a.out, progress=not a.quiet)
    from wakeword.evaluation.bench import markdown

    print(markdown(report))
    print(f"report: {Path(a.out) / 'bench.json'}, {Path(a.out) / 'bench.md'}, DET plots in {a.out}")
    return 0


# ---------------------------------------------------------------- export
def cmd_export(a: argparse.Namespace) -> int:
    from wakeword.evaluation.evaluate import EvalSet
    from wakeword.export import export_model

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


# ---------------------------------------------------------------- score
def cmd_score(a: argparse.Namespace) -> int:
    import numpy as np

    from wakeword.audio.io import AudioError, load_audio
    from wakeword.evaluation.detectors import load_detector
    from wakeword.evaluation.metrics import detect_events

    # Any detector spec: a checkpoint, a window export (float or INT8), a streaming export (fed hop by hop).
    det = load_detector(a.model)
    threshold = det.default_threshold if a.threshold is None else a.threshold

    def score(audio):
        det.reset()
        need = int(np.ceil(det.first_end_s * det.sample_rate))  # audio for the first score
        if len(audio) < need:
            audio = np.concatenate([audio, np.zeros(need - len(audio), np.float32)])
        return det.process(audio)

    results, failed = [], 0
    for f in a.files:
        try:
            audio = load_audio(f)
        except AudioError as exc:
            results.append({"file": f, "error": str(exc)})
            failed += 1
            continue
        s = score(audio)
        times = detect_events(s, threshold, det.hop_s, a.refractory)
        results.append({"file": f, "max_score": round(float(s.max()), 4),
                        "events_s": [round(float(t) + det.first_end_s, 2) for t in times]})
    if a.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}\tERROR {r['error']}")
            else:
                ev = ", ".join(f"{t:.2f}s" for t in r["events_s"]) or "-"
                print(f"{r['file']}\tmax={r['max_score']:.4f}\tevents: {ev}")
    return 1 if failed == len(a.files) else 0


# ---------------------------------------------------------------- convert
def cmd_convert_checkpoint(a: argparse.Namespace) -> int:
    from wakeword.training.checkpoint import convert_checkpoint

    if not a.trust_source:
        raise SystemExit("error: converting unpickles the file, which can run code from it: only convert a "
                         "checkpoint from a source you trust, and say so with --trust-source")
    convert_checkpoint(a.src, a.dst)
    print(f"{a.dst}: plain-data checkpoint (loads with weights_only=True)")
    return 0


# ---------------------------------------------------------------- demo
def cmd_demo(a: argparse.Namespace) -> int:
    from wakeword.pipeline import run_demo

    report_path = run_demo(a.config, a.out, progress=not a.quiet, phrase=a.phrase)
    print(f"\nDemo finished. Report: {report_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wakeword", description="Train custom wake-word detectors of very high precision.")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for inference (default 1: fastest for these small models)")
    sub = p.add_subparsers(dest="cmd", required=True)

    data = sub.add_parser("data", help="data set commands").add_subparsers(dest="data_cmd", required=True)
    b = data.add_parser("build", help="synthesise / collect clips and write the manifest (resumable)")
    b.add_argument("--config", help="YAML with a 'data:' section")
    b.add_argument("--out", required=True, help="data folder")
    b.add_argument("--phrase")
    b.add_argument("--seed", type=int)
    b.add_argument("--n-positive", type=int)
    b.add_argument("--n-adversarial", type=int)
    b.add_argument("--n-speech", type=int)
    b.add_argument("--n-noise", type=int)
    b.add_argument("--n-words", type=int, help="isolated common words (single-word negatives)")
    b.add_argument("--n-music", type=int, help="synthetic music clips (negatives and background)")
    b.add_argument("--engines", help="comma-separated subset of espeak-ng,flite,festival,piper")
    b.add_argument("--workers", type=int)
    b.add_argument("--positive-dir", action="append", help="folder of real wake-word recordings (repeatable)")
    b.add_argument("--negative-dir", action="append", help="folder of non-wake-word audio (repeatable)")
    b.add_argument("--noise-dir", action="append", help="folder of background noise (repeatable)")
    b.set_defaults(func=cmd_data_build)

    t = sub.add_parser("train", help="train a detector (resumes a killed run); no --config: the recommended recipe "
                       "(configs/demo.yaml's train section)")
    t.add_argument("--config", help="YAML with a 'train:' section")
    t.add_argument("--arch", choices=["speech_embedding", "mobilenetv3"],
                   help="mobilenetv3: the small student for microcontroller-class devices (default: the config's, "
                        "or the recommended speech-embedding detector)")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--epochs", type=int)
    t.add_argument("--steps-per-epoch", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--init-from", help="checkpoint to fine-tune from")
    t.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    t.set_defaults(func=cmd_train)

    te = sub.add_parser("teacher", help="teacher models for distillation").add_subparsers(dest="teacher_cmd",
                                                                                          required=True)
    tt = te.add_parser("train", help="train a Wav2Vec2, Conformer or speech-embedding teacher (resumes a "
                       "killed run)")
    tt.add_argument("--kind", required=True, choices=["wav2vec2", "conformer", "speech_embedding"],
                    help="speech_embedding: a head on Google's speech embedding (pretrained on real speech, "
                         "from openWakeWord's feature models), the teacher that generalises to real voices")
    tt.add_argument("--config", help="YAML with a 'train:' section (model: holds teacher parameters)")
    tt.add_argument("--data", required=True)
    tt.add_argument("--out", required=True, help="run folder")
    tt.add_argument("--preset", help="size preset: tiny, small, base")
    tt.add_argument("--pretrained", help="wav2vec2: a hub name or local folder for from_pretrained; "
                    "speech_embedding: a folder with melspectrogram.onnx and embedding_model.onnx "
                    "(default: the installed openwakeword package's)")
    tt.add_argument("--freeze-feature-encoder", action="store_true", help="wav2vec2: do not train the conv encoder")
    tt.add_argument("--freeze-layers", type=int, help="wav2vec2: do not train the lowest N transformer layers")
    tt.add_argument("--epochs", type=int)
    tt.add_argument("--steps-per-epoch", type=int)
    tt.add_argument("--batch-size", type=int)
    tt.add_argument("--lr", type=float)
    tt.add_argument("--seed", type=int)
    tt.add_argument("--device")
    tt.add_argument("--no-resume", action="store_true")
    tt.set_defaults(func=cmd_teacher_train)

    ds = sub.add_parser("distill", help="train the student with soft labels and features from trained teachers")
    ds.add_argument("--config", help="YAML with 'train:' and 'distill:' sections")
    ds.add_argument("--data", required=True)
    ds.add_argument("--out", required=True, help="run folder")
    ds.add_argument("--teacher", action="append", help="trained teacher checkpoint (repeatable)")
    ds.add_argument("--feature-loss", choices=["mse", "cosine", "relational"])
    ds.add_argument("--weighting", choices=["fixed", "confidence", "correctness"])
    ds.add_argument("--cache", action="store_true", help="precompute teacher outputs (needs train.augment_draws)")
    for flag, typ in (("--epochs", int), ("--steps-per-epoch", int), ("--batch-size", int), ("--lr", float),
                      ("--seed", int)):
        ds.add_argument(flag, type=typ)
    ds.add_argument("--device")
    ds.add_argument("--init-from", help="student checkpoint to start from")
    ds.add_argument("--no-resume", action="store_true")
    ds.set_defaults(func=cmd_distill)

    ex = sub.add_parser("experiment", help="measured comparisons").add_subparsers(dest="exp_cmd", required=True)
    xd = ex.add_parser("distill", help="baseline vs teachers vs distilled students over seeds (resumable)")
    xd.add_argument("--config", default="configs/distill_experiment.yaml")
    xd.add_argument("--out", default="work/distill_experiment")
    xd.add_argument("--seeds", type=int, nargs="+")
    xd.add_argument("--workers", type=int, default=1, help="runs in parallel (one CPU thread each)")
    xd.add_argument("--results", help="markdown file whose distillation section is (re)written, e.g. docs/RESULTS.md")
    xd.add_argument("--command", help=argparse.SUPPRESS)
    xd.add_argument("--summarise-only", action="store_true",
                    help="train nothing: tabulate the finished runs (a partial table says which seeds)")
    xd.set_defaults(func=cmd_experiment_distill)
    xm = ex.add_parser("mining", help="one hard-negative mining round: before / control / after (resumable)")
    xm.add_argument("--config", default="configs/mining_experiment.yaml")
    xm.add_argument("--out", default="work/mining_experiment")
    xm.add_argument("--results", help="markdown file whose mining section is (re)written, e.g. docs/RESULTS.md")
    xm.set_defaults(func=cmd_experiment_mining)

    xa = ex.add_parser("ablation", help="each training lever vs the default recipe, over seeds, on real recordings")
    xa.add_argument("--config", default="configs/ablation_computer.yaml")
    xa.add_argument("--out", default="work/ablation_computer")
    xa.add_argument("--seeds", type=int, nargs="+")
    xa.add_argument("--variants", nargs="+", help="run (or tabulate) only these variants and the default; "
                                                  "finished runs of the others stay where they are")
    xa.add_argument("--workers", type=int, default=1, help="runs in parallel (one CPU thread each)")
    xa.add_argument("--results", help="markdown file whose ablation section is (re)written, e.g. docs/RESULTS.md")
    xa.add_argument("--title", default="## Real voices: recipe ablation")
    xa.add_argument("--command", help=argparse.SUPPRESS)
    xa.add_argument("--summarise-only", action="store_true", help="train nothing: tabulate the finished runs")
    xa.set_defaults(func=cmd_experiment_ablation)

    hp = sub.add_parser("hpo", help="multi-objective hyperparameter search (pAUC vs latency)").add_subparsers(
        dest="hpo_cmd", required=True)
    hr = hp.add_parser("run", help="create or continue a study; trials run one at a time")
    hr.add_argument("--config", help="YAML with an 'hpo:' section (data_dir, train, space, pbt, ...)")
    hr.add_argument("--data", dest="data_dir", help="data folder (overrides the config)")
    hr.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    hr.add_argument("--resume", action="store_true", help="continue an existing study (after a kill too)")
    hr.add_argument("--study-dir", help="folder of trials and the default SQLite storage (default work/hpo)")
    hr.add_argument("--study-name")
    hr.add_argument("--storage", help="any Optuna RDB URL (default: sqlite in the study folder)")
    hr.add_argument("--latency", choices=["measured", "macs"], help="second objective")
    hr.add_argument("--seed", type=int)
    hr.add_argument("--no-pbt", action="store_true", help="plain NSGA-II (no PBT children)")
    hr.set_defaults(func=cmd_hpo_run)
    for name, fn, text in (("show", cmd_hpo_show, "Pareto table and plots"),
                           ("export", cmd_hpo_export, "export one trial's model like any other")):
        h = hp.add_parser(name, help=text)
        h.add_argument("--study-dir", default="work/hpo")
        h.add_argument("--study-name", default="wakeword")
        h.add_argument("--storage")
        if name == "show":
            h.add_argument("--out", help="folder for the plots (default: STUDY_DIR/report)")
        else:
            h.add_argument("--trial", type=int, required=True)
            h.add_argument("--out", required=True, help="output .onnx path")
            h.add_argument("--int8", action="store_true")
            h.add_argument("--streaming", action="store_true")
        h.set_defaults(func=fn)
    hc = hp.add_parser("compare", help="hypervolume of studies at the same trial budget (e.g. with vs without PBT)")
    hc.add_argument("--study", action="append", required=True, help="LABEL=STUDY_DIR[:STUDY_NAME], repeatable")
    hc.add_argument("--budget", type=int, help="first N finished trials of each (default: the smallest count)")
    hc.add_argument("--out", required=True, help="folder for compare.md/json and hypervolume_compare.png")
    hc.set_defaults(func=cmd_hpo_compare)

    mn = sub.add_parser("mine", help="hard-negative mining (the CLI twin of the UI)").add_subparsers(
        dest="mine_cmd", required=True)
    for name, text in (("register", "register negative recordings/clips (files or folders) for the pool"),
                       ("run", "score the pool and queue the top false alarms"),
                       ("queue", "list candidates"), ("confirm", "confirm candidates (they are not the wake word)"),
                       ("discard", "discard candidates"), ("inject", "add confirmed clips to the training split")):
        m = mn.add_parser(name, help=text)
        m.add_argument("--workspace", default=".", help="workspace folder (holds wakeword.db)")
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

    sv = sub.add_parser("serve", help="the web app: runs, benchmarks, hard-negative mining")
    sv.add_argument("--workspace", default=".", help="folder with runs, data and the UI state (default: here)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)
    sv.add_argument("--allowed-host", action="append",
                    help="another Host name clients use (repeatable; loopback names and --host are always allowed)")
    sv.add_argument("--allow-dir", action="append",
                    help="a folder outside the workspace whose audio may be registered and served (repeatable)")
    sv.add_argument("--token", default=None,
                    help="access token every client must give (default: none on loopback, a random one otherwise)")
    sv.add_argument("--max-jobs", type=int, default=2, help="benchmark / mining / retrain jobs at once (default 2)")
    sv.set_defaults(func=cmd_serve)

    e = sub.add_parser("eval", help="evaluate on the test split and/or real audio folders")
    e.add_argument("--model", required=True)
    e.add_argument("--data", help="data folder whose split to evaluate")
    e.add_argument("--split", default="test")
    e.add_argument("--set", action="append", help="evaluation-set YAML (repeatable)")
    e.add_argument("--positives", action="append", help="folder of positive clips")
    e.add_argument("--negatives", action="append", help="folder of negative clips / long recordings")
    e.add_argument("--max-fpr", type=float, default=0.1)
    e.add_argument("--threshold", type=float, default=None,
                   help="for the FA/h and FRR at a fixed threshold (default: the model's own, else 0.5)")
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="several detectors (ours and openWakeWord) on the same real audio, one protocol "
                                     "(always one CPU thread, so the cost column compares like with like)")
    b.add_argument("--detector", action="append", required=True,
                   help="[label=]SPEC, repeatable: a .pt checkpoint, an .onnx / .int8.onnx / .stream.onnx export, "
                        "oww:NAME (openWakeWord: alexa, hey_mycroft, hey_jarvis, hey_rhasspy, timer, weather, or a "
                        "custom model's NAME.onnx), mww:NAME (microWakeWord via pymicro-wakeword: alexa, hey_jarvis, "
                        "hey_mycroft, okay_nabu, or a manifest's NAME.json), "
                        "or A.pt+B.pt+... (an ensemble: the mean of its members' probabilities)")
    b.add_argument("--preset", action="append", help="a described data set: real-dev (../shared/data/real, 'computer')")
    b.add_argument("--data", help="data folder whose split to bench on (as `wakeword eval --data`)")
    b.add_argument("--split", default="test")
    b.add_argument("--set", action="append", help="set YAML: root, positives, negatives, noise globs, phrase")
    b.add_argument("--positives", action="append", help="folder of wake-phrase recordings")
    b.add_argument("--negatives", action="append", help="folder of audio that is not the wake phrase")
    b.add_argument("--noise", action="append", help="folder of background noise (for --snr)")
    b.add_argument("--phrase", help="what the --positives folders say (detectors of other phrases skip them)")
    b.add_argument("--snr", type=float, default=None, help="mix the set's noise into every clip at this SNR (dB)")
    b.add_argument("--lead", type=float, help="seconds of silence before each positive (default: half a window, "
                   "as every surface scores)")
    b.add_argument("--tail", type=float, help="seconds of silence after each positive (default: half a window)")
    b.add_argument("--refractory", type=float, help="seconds (default 1)")
    b.add_argument("--out", required=True)
    b.set_defaults(func=cmd_bench)

    x = sub.add_parser("export", help="export ONNX with the front end inside")
    x.add_argument("--model", required=True)
    x.add_argument("--out", required=True, help="output .onnx path (INT8 goes next to it as NAME.int8.onnx)")
    x.add_argument("--format", choices=("wakeword", "openwakeword"), default="wakeword",
                   help="wakeword: raw audio in, score out (ours); openwakeword: the head of a speech_embedding "
                        "model as a custom openWakeWord / Home Assistant model (NAME.onnx + NAME.json)")
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

    s = sub.add_parser("score", help="score audio files (any rate / channels)")
    s.add_argument("--model", required=True, help=".pt checkpoint or .onnx export")
    s.add_argument("files", nargs="+")
    s.add_argument("--threshold", type=float, default=None,
                   help="default: the model's own (calibrated on its validation split when trained), else 0.5")
    s.add_argument("--refractory", type=float, default=1.0, help="seconds")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)

    cv = sub.add_parser("convert-checkpoint", help="rewrite an old (pickled-object) checkpoint as plain data "
                                                    "that loads without running code; trusted files only")
    cv.add_argument("src")
    cv.add_argument("dst")
    cv.add_argument("--trust-source", action="store_true",
                    help="required: the old file is unpickled, which runs any code it holds")
    cv.set_defaults(func=cmd_convert_checkpoint)

    d = sub.add_parser("demo", help="build data, train, evaluate and export with one command")
    d.add_argument("--config", default=None, help="YAML with data/train/eval sections (default: configs/demo.yaml)")
    d.add_argument("--out", default="work/demo")
    d.add_argument("--phrase", help="your wake phrase (default: the config's, 'computer'); the real development "
                   "recordings are only used to evaluate a phrase they hold")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads > 0 and args.cmd in ("eval", "score", "export", "demo", "mine", "serve"):
        import torch

        torch.set_num_threads(args.threads)
    from wakeword.dataset.manifest import DataFolderBusy

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError, DataFolderBusy) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
