"""User recordings in the data build (issue #17): splits by file or speaker folder, long files used whole,
every cut and skip recorded, a minimum positive length, fixed files read again."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from wakeword.dataset.build import DataConfig, build
from wakeword.dataset.manifest import read_manifest

SR = 16000


def _cfg(**kw) -> DataConfig:
    base = {"phrase": "hello robot", "n_positive": 0, "n_adversarial": 0, "n_speech": 0, "n_noise": 0,
            "n_babble": 0, "n_words": 0, "engines": ("espeak-ng",)}
    base.update(kw)
    return DataConfig(**base)


def _tone(path: Path, seconds: float, hz: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, 0.3 * np.sin(2 * np.pi * hz * t), SR)


def _noise(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR)), SR)


def test_user_folders_split_by_file_long_negatives_by_chunk(tmp_path):
    pos, neg = tmp_path / "my_recordings", tmp_path / "podcasts"
    for i in range(20):
        _tone(pos / f"take{i}.wav", 0.6, 200 + 10 * i)
    _noise(neg / "episode.wav", 100.0, 0)  # one long recording, no speaker id: 10 chunks of 10 s
    out = tmp_path / "data"
    build(_cfg(positive_dirs=(str(pos),), negative_dirs=(str(neg),)), out, progress=False)
    rows = [r for r in read_manifest(out) if r.engine == "user"]
    positives = Counter(r.split for r in rows if r.label == 1)
    assert sum(positives.values()) == 20
    assert set(positives) == {"train", "val", "test"} and positives["train"] > positives["val"], positives
    chunks = sorted((json.loads(r.source)["offset_s"], r.split) for r in rows if r.label == 0)
    assert len(chunks) == 10
    # contiguous blocks of time: 70 s train, then val, then test
    assert [s for _, s in chunks] == ["train"] * 7 + ["val"] * 2 + ["test"]


def test_a_speaker_folder_keeps_its_speaker_in_one_split(tmp_path):
    pos, neg = tmp_path / "pos", tmp_path / "neg"
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
    for k, name in enumerate(names):
        for i in range(3):
            _tone(pos / name / f"{i}.wav", 0.6, 200 + 40 * k + 7 * i)
        _noise(neg / name / "talk.wav", 30.0, k)
    out = tmp_path / "data"
    build(_cfg(positive_dirs=(str(pos),), negative_dirs=(str(neg),)), out, progress=False)
    rows = [r for r in read_manifest(out) if r.engine == "user"]
    by_speaker: dict[str, set] = {}
    for r in rows:
        by_speaker.setdefault(r.speaker, set()).add(r.split)
    assert set(by_speaker) == {f"user:{n}" for n in names}  # the folder name, under both folders
    assert all(len(s) == 1 for s in by_speaker.values()), by_speaker  # positives and negatives together
    assert {next(iter(s)) for s in by_speaker.values()} == {"train", "val", "test"}


def test_long_files_are_used_whole_and_every_cut_is_recorded(tmp_path):
    neg = tmp_path / "neg"
    _noise(neg / "long.wav", 70.1, 1)
    out = tmp_path / "data"
    report = build(_cfg(negative_dirs=(str(neg),), max_file_s=30.0), out, progress=False)
    rows = read_manifest(out)
    assert len(rows) == 7 and abs(sum(r.duration_s for r in rows) - 70.0) < 1e-3  # all of it, in 10 s chunks
    assert report["cuts"] == 1 and "0.100 s left out" in report["cut_detail"][0]["reason"]
    assert "long.wav" in report["cut_detail"][0]["what"]
    assert (out / "cuts.jsonl").read_text().count("left out") == 1


def test_a_too_short_positive_is_skipped_with_its_reason(tmp_path):
    pos = tmp_path / "pos"
    _tone(pos / "blip.wav", 0.006, 440)  # 6 ms
    _tone(pos / "word.wav", 0.5, 440)
    report = build(_cfg(positive_dirs=(str(pos),)), tmp_path / "data", progress=False)
    assert [r.voice for r in read_manifest(tmp_path / "data")] == [str(pos / "word.wav")]
    reasons = {Path(d["what"]).name: d["reason"] for d in report["skipped_detail"]}
    assert "too short" in reasons["blip.wav"]


def test_a_skipped_file_is_read_again_once_fixed(tmp_path):
    pos = tmp_path / "pos"
    pos.mkdir()
    (pos / "take.wav").write_bytes(b"RIFF1234WAVEjunkjunk")  # a broken export
    _tone(pos / "other.wav", 0.5, 300)
    out = tmp_path / "data"
    r1 = build(_cfg(positive_dirs=(str(pos),)), out, progress=False)
    assert r1["clips"] == 1 and r1["skipped"] == 1
    assert build(_cfg(positive_dirs=(str(pos),)), out, progress=False)["skipped"] == 1  # unchanged: not retried
    _tone(pos / "take.wav", 0.5, 500)  # the user re-exports it
    r3 = build(_cfg(positive_dirs=(str(pos),)), out, progress=False)
    assert r3["clips"] == 2 and r3["skipped"] == 0
    assert {Path(r.voice).name for r in read_manifest(out)} == {"take.wav", "other.wav"}
