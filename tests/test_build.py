import json

import numpy as np
import soundfile as sf

from wakeword.dataset.build import DataConfig, build
from wakeword.dataset.manifest import FIELDS, read_manifest
from wakeword.dataset.text import adversarial_texts, contains_phrase, speech_texts, word_texts


def test_manifest_rows_are_complete_and_splits_disjoint_by_speaker(tiny_data):
    rows = read_manifest(tiny_data)
    assert rows and set(FIELDS) >= {"path", "label", "kind", "engine", "voice", "split", "duration_s", "sha256"}
    kinds = {r.kind for r in rows}
    assert {"positive", "adversarial", "speech", "noise"} <= kinds
    for r in rows:
        assert (tiny_data / r.path).is_file() and r.duration_s > 0 and len(r.sha256) == 64
        assert r.label == (1 if r.kind == "positive" else 0)
    speakers = {s: {r.speaker for r in rows if r.split == s} for s in ("train", "val", "test")}
    assert not (speakers["train"] & speakers["val"]) and not (speakers["train"] & speakers["test"])
    assert not (speakers["val"] & speakers["test"])
    for split in ("train", "val", "test"):
        assert any(r.label == 1 and r.split == split for r in rows), split
    assert len({r.sha256 for r in rows}) == len(rows)  # stored once per hash
    assert {r.engine for r in rows} >= {"espeak-ng", "flite", "synthetic"}


def test_negatives_never_say_the_phrase():
    for t in adversarial_texts("hey computer", 200, 0) + speech_texts("hey computer", 200, 0):
        assert not contains_phrase(t, "hey computer")


def _cfg(**kw) -> DataConfig:
    base = dict(phrase="hello robot", n_positive=6, n_adversarial=4, n_speech=3, n_noise=2, n_babble=0,
                n_words=0,
                engines=("espeak-ng",))
    base.update(kw)
    return DataConfig(**base)


def test_build_is_idempotent_and_resumes(tmp_path):
    cfg = _cfg()
    r1 = build(cfg, tmp_path, progress=False)
    rows = read_manifest(tmp_path)
    assert r1["clips"] == len(rows) > 0
    r2 = build(cfg, tmp_path, progress=False)  # nothing new to do
    assert r2["clips"] == r1["clips"] and len(read_manifest(tmp_path)) == len(rows)
    # Simulate a build killed mid-way: keep only half the manifest (plus a torn line).
    lines = (tmp_path / "manifest.csv").read_text().splitlines()
    keep = lines[: 1 + len(rows) // 2]
    (tmp_path / "manifest.csv").write_text("\n".join(keep) + "\n" + lines[-1][: len(lines[-1]) // 2])
    r3 = build(cfg, tmp_path, progress=False)
    rows3 = read_manifest(tmp_path)
    assert {r.sha256 for r in rows3} == {r.sha256 for r in rows}
    assert r3["clips"] == len(rows3) == len(rows)


def test_bad_user_files_are_skipped_with_reasons(tmp_path):
    pos, neg = tmp_path / "pos", tmp_path / "neg"
    pos.mkdir()
    neg.mkdir()
    t = np.arange(48000) / 48000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(pos / "stereo48k.wav", np.stack([tone, tone], 1), 48000)  # resampled + downmixed
    sf.write(pos / "too_long.wav", np.tile(tone, 10), 48000)  # 10 s positive: skipped
    (pos / "corrupt.wav").write_bytes(b"RIFF1234WAVEjunkjunk")
    (pos / "empty.flac").write_bytes(b"")
    sf.write(neg / "silence.wav", np.zeros(16000), 16000)  # digital silence: skipped
    sf.write(neg / "long.flac", 0.1 * np.random.default_rng(0).standard_normal(16000 * 25), 16000)
    sf.write(neg / "copy_of_long.flac", sf.read(neg / "long.flac")[0], 16000)  # duplicate audio
    out = tmp_path / "data"
    report = build(_cfg(n_positive=2, n_adversarial=0, n_speech=0, n_noise=0, positive_dirs=(str(pos),),
                        negative_dirs=(str(neg),)), out, progress=False)
    rows = read_manifest(out)
    user = [r for r in rows if r.engine == "user"]
    assert sum(r.kind == "positive" for r in user) == 1  # only the stereo one
    assert sum(r.kind == "speech" for r in user) == 3  # 25 s cut into 10 + 10 + 5 s chunks, stored once
    reasons = " ".join(d["reason"] for d in report["skipped_detail"])
    for word in ("longer", "cannot decode", "silence", "duplicate"):
        assert word in reasons, (word, reasons)
    assert json.loads((out / "build_report.json").read_text())["skipped"] == report["skipped"]


def test_folder_of_another_phrase_is_refused(tmp_path):
    import pytest

    build(_cfg(n_positive=1, n_adversarial=0, n_speech=0, n_noise=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="holds data for the phrase"):
        build(_cfg(phrase="other words"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="empty"):
        build(_cfg(phrase=" ?! "), tmp_path / "x", progress=False)


def test_clip_cache_serves_a_second_phrase_the_same_negatives(tmp_path, monkeypatch):
    """Negative speech and words do not depend on the phrase: a second phrase's build reads them from the clip
    cache (identical audio, nothing rendered again), while its positives and near-phrases are its own."""
    monkeypatch.setenv("WAKEWORD_CLIP_CACHE", str(tmp_path / "cache"))
    cfg = dict(n_positive=4, n_adversarial=3, n_speech=6, n_noise=0, n_babble=0, n_words=5,
               engines=("espeak-ng", "flite"))
    r1 = build(_cfg(phrase="hello robot", **cfg), tmp_path / "a", progress=False)
    assert r1["tts_from_cache"] == 0
    cached = list((tmp_path / "cache").rglob("*.npy"))
    assert len(cached) == r1["clips"]  # every rendered clip was stored
    r2 = build(_cfg(phrase="good morning", **cfg), tmp_path / "b", progress=False)
    a, b = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "b")
    neg = lambda rows: {r.clip_id: r.sha256 for r in rows if r.kind in ("speech", "word")}  # noqa: E731
    shared = set(neg(a)) & set(neg(b))
    assert len(shared) >= 9 and all(neg(a)[k] == neg(b)[k] for k in shared)
    assert r2["tts_from_cache"] == len(shared)
    assert not {r.sha256 for r in a if r.label == 1} & {r.sha256 for r in b if r.label == 1}
    # a torn cache file is rendered again, not trusted
    victim = next(iter((tmp_path / "cache").rglob(f"{sorted(shared)[0]}.npy")))
    victim.write_bytes(b"torn")
    r3 = build(_cfg(phrase="good morning", **cfg), tmp_path / "c", progress=False)
    assert r3["tts_from_cache"] == len(b) - 1  # all of b's clips are cached now, but for the torn one
    assert {r.sha256 for r in read_manifest(tmp_path / "c")} == {r.sha256 for r in b}
    monkeypatch.setenv("WAKEWORD_CLIP_CACHE", "off")
    assert build(_cfg(phrase="good morning", **cfg), tmp_path / "d", progress=False)["tts_from_cache"] == 0


def test_negative_texts_do_not_depend_on_the_phrase_but_never_say_it():
    """Sentences and words are the same texts, position by position, for every phrase (so the clip cache serves a
    second phrase), except where a text would say the phrase."""
    for a, b in (("computer", "amelia"), ("hey nova", "okay robot")):
        for make in (speech_texts, word_texts):
            ta, tb = make(a, 800, 0), make(b, 800, 0)
            assert len(ta) == len(tb) == 800
            assert not any(contains_phrase(t, a) for t in ta) and not any(contains_phrase(t, b) for t in tb)
            assert sum(x == y for x, y in zip(ta, tb)) >= 760, (make.__name__, a, b)
    assert any(contains_phrase(t, "computer") for t in word_texts("amelia", 5000, 0))  # the list holds it...
    assert not any(contains_phrase(t, "computer") for t in word_texts("computer", 5000, 0))  # ...and it is replaced


def test_report_names_the_engines_that_spoke(tmp_path):
    """An installed engine with no share of the clips (Kokoro by default) is available, not used."""
    off = {"flite": 0.0}
    report = build(_cfg(engines=("espeak-ng", "flite"), engine_weights_by_kind={"positive": off, "adversarial": off,
                                                                                "speech": off}),
                   tmp_path, progress=False)
    assert report["engines_available"] == ["espeak-ng", "flite"]
    assert report["engines_used"] == ["espeak-ng"]
    assert {r.engine for r in read_manifest(tmp_path)} == {"espeak-ng", "synthetic"}
