"""Mine false alarms from a pool of negative audio, and inject the ones a person confirmed into the
training split.

The mining pool is the registered negative sources plus the training split's negatives. It never holds
validation or test audio, nor files of a registered evaluation set: ``build_pool`` refuses them (by
path and by content hash), whatever the caller is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wakeword.audio.io import AudioError, load_audio, wav_bytes
from wakeword.dataset.manifest import ClipRow, append_rows, read_manifest, select, writer_lock
from wakeword.defaults import REFRACTORY_S
from wakeword.mining.store import MiningStore

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


class PoolError(ValueError):
    """A file that must not be mined (evaluation data)."""


@dataclass(frozen=True)
class MineConfig:
    min_score: float = 0.5  # a false alarm: a rising crossing of this score
    top_k: int = 50  # candidates queued per round (highest scores first)
    margin_s: float = 0.25  # audio kept before and after the detected window, seconds
    refractory_s: float = REFRACTORY_S  # events closer than this in one file count once
    max_per_source: int = 5  # so one long file cannot fill the queue


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def protected_files(data_dir: str | Path, eval_files: Sequence[str] = ()) -> tuple[set[str], set[str]]:
    """(paths, sha256s) that mining must never touch: the val/test clips and evaluation-set files."""
    data_dir = Path(data_dir)
    paths, hashes = set(), set()
    for r in read_manifest(data_dir):
        if r.split in ("val", "test"):
            paths.add(str((data_dir / r.path).resolve()))
            hashes.add(r.sha256)
    for f in eval_files:
        paths.add(str(Path(f).resolve()))
    return paths, hashes


def build_pool(data_dir: str | Path, sources: list[str], eval_files: Sequence[str] = (),
               include_training_negatives: bool = True) -> list[str]:
    """The files to mine: ``sources`` (refused if any is evaluation data) + the train split's negatives."""
    data_dir = Path(data_dir)
    paths, hashes = protected_files(data_dir, eval_files)
    pool = []
    for s in sources:
        p = Path(s).resolve()
        if str(p) in paths:
            raise PoolError(f"{p} is validation/test or evaluation-set audio: the mining pool never includes it")
        if p.is_file():
            with open(p, "rb") as f:
                head = f.read(64)
            if head:
                digest = _sha256_file(p)
                # Clips stored by the build are hashed as written, so a copy of a test clip is caught too.
                if digest in hashes:
                    raise PoolError(f"{p} has the same audio as a validation/test clip: refused for mining")
        pool.append(str(p))
    if include_training_negatives:
        for r in select(read_manifest(data_dir), "train"):
            if r.label == 0 and r.kind != "noise":
                pool.append(str((data_dir / r.path).resolve()))
    return pool


def mine(store: MiningStore, checkpoint: str | Path, pool: list[str], cfg: MineConfig = MineConfig(),
         progress: Progress | None = None) -> list[int]:
    """Score every pool file, cut a clip around each false alarm, queue the top ``top_k`` as candidates.

    Returns the ids of the new candidates (audio already queued, by hash, is skipped).
    """
    from wakeword.evaluation.metrics import detect_events
    from wakeword.runtime.detector import Detector

    det = Detector.load(checkpoint)
    sr = det.feat.sample_rate
    found: list[tuple[float, str, float, np.ndarray]] = []  # (score, source, offset_s, audio)
    for i, path in enumerate(pool):
        if progress:
            progress(0.9 * i / max(1, len(pool)), f"scoring {Path(path).name} ({i + 1}/{len(pool)})")
        try:
            audio = load_audio(path)
        except AudioError as exc:
            logger.warning("skipping %s: %s", path, exc)
            continue
        scores, hop = det.score_track(audio)
        times = detect_events(scores, cfg.min_score, hop, cfg.refractory_s)
        events = []
        for t in times:
            k = int(round(t / hop))
            peak = float(scores[k:k + max(1, int(cfg.refractory_s / hop))].max())
            events.append((peak, t))
        for peak, t in sorted(events, reverse=True)[: cfg.max_per_source]:
            start = max(0.0, t - cfg.margin_s)
            end = min(len(audio) / sr, t + det.feat.window_s + cfg.margin_s)
            found.append((peak, path, start, audio[int(start * sr):int(end * sr)]))
    found.sort(key=lambda x: -x[0])
    clip_dir = store.workspace / "mining" / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    new = []
    for score, source, offset, audio in found[: cfg.top_k]:
        data = wav_bytes(audio, sr)
        digest = hashlib.sha256(data).hexdigest()
        clip = clip_dir / f"{digest}.wav"
        if not clip.exists():
            tmp = clip.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(clip)  # the row below is written only once the file is complete
        cid = store.add_candidate(str(clip), digest, source, round(offset, 3), round(len(audio) / sr, 3), score,
                                  str(Path(checkpoint).resolve()))
        if cid is not None:
            new.append(cid)
    if progress:
        progress(1.0, f"{len(new)} new candidates from {len(pool)} files")
    return new


def inject(store: MiningStore, data_dir: str | Path) -> list[ClipRow]:
    """Confirmed candidates -> hard negatives in the training split, with provenance. Idempotent: a clip
    whose audio is already in the manifest is not added twice. Never writes to validation or test."""
    data_dir = Path(data_dir).resolve()
    if not (data_dir / "manifest.csv").exists():
        raise FileNotFoundError(f"no data set at {data_dir}")
    with writer_lock(data_dir, "wakeword mine inject"):
        return _inject_locked(store, data_dir)


def _inject_locked(store: MiningStore, data_dir: Path) -> list[ClipRow]:
    known = {r.sha256: r for r in read_manifest(data_dir)}
    rows = []
    for c in store.candidates(status="confirmed"):
        if c.injected_at:
            continue
        if c.sha256 in known:
            if known[c.sha256].split != "train":
                raise PoolError(f"candidate {c.id} has the audio of a {known[c.sha256].split} clip: not injected")
            store.mark_injected(c.id, str(data_dir))
            continue
        rel = Path("clips") / "mined" / f"{c.sha256}.wav"
        dest = data_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            shutil.copyfile(c.clip, tmp)
            tmp.replace(dest)
        provenance = {"mined_from": c.source, "offset_s": c.offset_s, "score": round(c.score, 4), "model": c.model,
                      "decision": c.status, "decided_at": c.decided_at, "candidate": c.id}
        row = ClipRow(clip_id=f"mined-{c.sha256[:16]}", path=str(rel), label=0, kind="hard_negative",
                      engine="mined", voice=Path(c.source).name, speaker=f"mined:{Path(c.source).stem}",
                      split="train", duration_s=c.duration_s, sha256=c.sha256, text="",
                      source=json.dumps(provenance))
        append_rows(data_dir, [row])
        store.mark_injected(c.id, str(data_dir))
        known[c.sha256] = row
        rows.append(row)
    return rows


def retrain(checkpoint: str | Path, data_dir: str | Path, run_dir: str | Path, epochs: int = 4,
            steps_per_epoch: int | None = None, lr_scale: float = 0.3, adversarial_fraction: float | None = None,
            progress: bool = False) -> dict:
    """Fine-tune ``checkpoint`` on the data set (now holding the injected hard negatives) with the one
    ``fit`` loop: its resolved train config, started from its weights, a lower peak learning rate."""
    from wakeword.training.checkpoint import load_checkpoint
    from wakeword.training.fit import TrainConfig, fit

    ckpt = load_checkpoint(checkpoint)
    base = dict(ckpt.get("config", {}).get("train", {}))
    base.update({"init_from": str(Path(checkpoint).resolve()), "epochs": epochs,
                 "lr": base.get("lr", TrainConfig().lr) * lr_scale, "warmup_frac": 0.1})
    if steps_per_epoch:
        base["steps_per_epoch"] = steps_per_epoch
    if adversarial_fraction is not None:
        base["adversarial_fraction"] = adversarial_fraction
    return fit(TrainConfig.from_dict(base), data_dir, run_dir, progress=progress)



def eval_set_from_spec(name: str, spec: dict):
    """A registered evaluation set -> EvalSet (YAML file or positive/negative folders and files)."""
    from wakeword.evaluation.evaluate import EvalSet

    if "yaml" in spec:
        return EvalSet.from_yaml(spec["yaml"])
    return EvalSet.from_dirs(name, list(spec.get("positives", [])), list(spec.get("negatives", [])))


def registered_eval_files(store: MiningStore) -> list[str]:
    files = []
    for name, spec in store.eval_sets().items():
        try:
            s = eval_set_from_spec(name, spec)
        except (ValueError, FileNotFoundError) as exc:
            logger.warning("evaluation set %s cannot be read: %s", name, exc)
            continue
        files += list(s.positives) + list(s.negatives)
    return files
