"""The clip manifest: one CSV row per stored clip.

Columns: clip_id, path (relative to the data folder), label (1 wake word, 0 not), kind
(positive / adversarial / speech / word / music / noise / hard_negative), engine, voice, speaker, split
(train / val / test), duration_s, sha256, text, source (origin, for provenance).
"""
from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

# word: one isolated word (people say single words to each other and to devices); music: synthetic
# music (melody, chords, bass, drums, sung vowels), also used as background for mixing like noise.
KINDS = ("positive", "adversarial", "speech", "word", "music", "noise", "hard_negative")
BACKGROUND_KINDS = ("noise", "music")  # kinds mixed under other clips as background
SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.csv"


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
    """All rows of ``data_dir/manifest.csv`` ([] if there is none)."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if not r.get("clip_id") or None in r.values() or len(r.get("sha256") or "") != 64:
                continue  # a torn line from a killed writer: its job is simply redone
            try:
                rows.append(ClipRow(**{**r, "label": int(r["label"]), "duration_s": float(r["duration_s"])}))
            except (TypeError, ValueError, KeyError):
                continue
    return rows


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
