"""The clip manifest: one CSV row per stored clip.

Columns: clip_id, path (relative to the data folder), label (1 wake word, 0 not), kind
(positive / adversarial / speech / word / music / noise / hard_negative), engine, voice, speaker, split
(train / val / test), duration_s, sha256, text, source (origin, for provenance).
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

logger = logging.getLogger(__name__)

# word: one isolated word (people say single words to each other and to devices); music: synthetic
# music (melody, chords, bass, drums, sung vowels), also used as background for mixing like noise.
# sentence: a natural English sentence from a text corpus (data.n_sentences).
KINDS = ("positive", "adversarial", "speech", "word", "sentence", "music", "noise", "hard_negative")
BACKGROUND_KINDS = ("noise", "music")  # kinds mixed under other clips as background
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.csv"
LOCK_NAME = ".writer.lock"  # held by the one process writing a data folder (build, injection)


@dataclass(frozen=True)
class ClipRow:
    clip_id: str  # build job id (+ chunk index), unique
    path: str  # relative to the data folder
    label: int  # 1: wake word, 0: anything else
    kind: str  # one of KINDS
    engine: str  # TTS engine, "user", "synthetic" or "mined"
    voice: str  # engine voice (+variant) or source file
    speaker: str  # identity used for disjoint splits
    split: str  # one of SPLITS
    duration_s: float  # seconds
    sha256: str  # of the stored 16-bit PCM WAV bytes
    text: str  # what was said ("" for noise and user clips)
    source: str  # provenance (engine/prosody, user path, mining details)


FIELDS = [f.name for f in fields(ClipRow)]


def read_manifest(data_dir: str | Path) -> list[ClipRow]:
    """All rows of ``data_dir/manifest.csv`` ([] if there is none), each clip id once: a repeated id
    (two writers that once ran at the same time) keeps its first row, with a warning."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        return []
    rows, seen, repeated = [], set(), 0
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if not r.get("clip_id") or None in r.values() or len(r.get("sha256") or "") != 64:
                continue  # a torn line from a killed writer: its job is simply redone
            if r["clip_id"] in seen:
                repeated += 1
                continue
            if Path(r["path"]).is_absolute() or ".." in Path(r["path"]).parts:
                logger.warning("%s: row %s points outside the data folder (%s): ignored", path, r["clip_id"], r["path"])
                continue
            try:
                rows.append(ClipRow(**{**r, "label": int(r["label"]), "duration_s": float(r["duration_s"])}))
            except (TypeError, ValueError, KeyError):
                continue
            seen.add(r["clip_id"])
    if repeated:
        logger.warning("%s: %d repeated clip ids ignored (each clip is read once)", path, repeated)
    return rows


class DataFolderBusy(RuntimeError):
    """Another process holds the data folder's writer lock."""


@contextlib.contextmanager
def writer_lock(data_dir: str | Path, what: str = "wakeword data build"):
    """Hold the one-writer lock of ``data_dir`` (released by the OS if the process dies, kill -9 too).

    A second writer fails at once with a clear message instead of appending the same rows again."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_NAME, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise DataFolderBusy(f"{data_dir} is being written by {holder}: one writer per data folder; wait for "
                               "it to finish (or stop it), then run this again (it resumes)") from None
        f.seek(0)
        f.truncate()
        f.write(f"{what} (pid {os.getpid()})")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def append_rows(data_dir: str | Path, rows: list[ClipRow]) -> None:
    """Append rows durably (flush + fsync), writing the header for a new manifest."""
    path = Path(data_dir) / MANIFEST_NAME
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, "rb") as f:  # heal a torn last line so the next row starts cleanly
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with open(path, "a", newline="") as f:
        if not new and torn:
            f.write("\n")
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
        f.flush()
        os.fsync(f.fileno())


def select(rows: list[ClipRow], split: str | None = None, kinds: tuple[str, ...] | None = None) -> list[ClipRow]:
    return [r for r in rows if (split is None or r.split == split) and (kinds is None or r.kind in kinds)]
