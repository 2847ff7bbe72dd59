"""Kokoro natural voices (real synthesis), voice mixing, voice-disjoint splits, the embedding cache
(cached = recomputed, resumable) and the long-context head trained from it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from wakeword.audio.io import SAMPLE_RATE
from wakeword.audio.tts import KokoroBackend, Prosody, Voice, mix_name, parse_mix
from wakeword.dataset.build import (
    DataConfig,
    assign_splits,
    kokoro_voice,
    kokoro_voice_plan,
    plan,
    says_phrase,
)


def _kokoro() -> KokoroBackend:
    b = KokoroBackend()
    if not b.available():
        pytest.skip("Kokoro is not installed (scripts/setup.sh installs it)")
    return b


def test_kokoro_speaks_a_phrase_with_a_base_voice_and_with_a_mix():
    b = _kokoro()
    voices = b.base_voices()
    names = {v.name for v in voices}
    assert {"af_heart", "bm_george"} <= names and len(voices) >= 28
    assert len(b.base_voices(accented=False)) == 28  # the native English voices (US and UK)
    one = b.synthesize("computer", Voice("kokoro", "af_heart", "kokoro:af_heart"), Prosody())
    assert one.dtype == np.float32 and 0.3 * SAMPLE_RATE < len(one) < 2.0 * SAMPLE_RATE
    assert float(np.sqrt(np.mean(one ** 2))) > 0.01  # speech, not silence
    mixed = Voice("kokoro", mix_name([("af_heart", 0.5), ("bm_george", 0.5)]), "kokoro:af_heart+bm_george")
    two = b.synthesize("computer", mixed, Prosody())
    assert 0.3 * SAMPLE_RATE < len(two) < 2.0 * SAMPLE_RATE
    # the mixed style vector lies between its bases: a new voice, not one of them
    s_mix, s_a, s_b = b.style(mixed.name), b.style("af_heart"), b.style("bm_george")
    assert np.allclose(s_mix, 0.5 * s_a + 0.5 * s_b, atol=1e-6) and not np.allclose(s_mix, s_a)


def test_a_corrupt_voice_file_is_named_in_the_error(tmp_path):
    from wakeword.audio.io import AudioError

    (tmp_path / "af_bad.bin").write_bytes(b"\x00\x01\x02")  # not a whole style vector
    b = KokoroBackend(voices_dir=tmp_path)
    with pytest.raises(AudioError, match="af_bad.bin"):
        b.base_voices()


def test_voice_mix_names_round_trip_and_are_convex():
    parts = parse_mix(mix_name([("af_heart", 0.25), ("am_adam", 0.75)]))
    assert parts == [("af_heart", 0.25), ("am_adam", 0.75)]
    assert parse_mix("bf_emma") == [("bf_emma", 1.0)]
    with pytest.raises(ValueError):
        parse_mix("a@-1+b@0.5")


def test_mixes_stay_inside_the_split_of_their_voices():
    import random

    base = [Voice("kokoro", f"v{i:02d}", f"kokoro:v{i:02d}") for i in range(20)]
    cfg = DataConfig()
    splits = assign_splits([v.speaker for v in base], cfg)
    assert set(splits.values()) == {"train", "val", "test"}
    rng = random.Random(0)
    for k in range(200):
        v = kokoro_voice(rng, base, splits, base[k % 20], mix_prob=1.0)
        bases = [b for b, _ in parse_mix(v.name)]
        assert 2 <= len(bases) <= 3 and abs(sum(w for _, w in parse_mix(v.name)) - 1) < 1e-6
        assert len({splits[f"kokoro:{b}"] for b in bases}) == 1  # one split per mix
        got = assign_splits([v.speaker] + [b.speaker for b in base], cfg)
        assert got[v.speaker] == splits[f"kokoro:{bases[0]}"]
    with pytest.raises(ValueError, match="spans splits"):
        a = next(s for s in splits if splits[s] == "train").split(":")[1]
        t = next(s for s in splits if splits[s] == "test").split(":")[1]
        assign_splits([f"kokoro:{a}+{t}"] + [b.speaker for b in base], cfg)


def test_a_kokoro_plan_is_voice_disjoint_across_splits():
    b = _kokoro()
    cfg = DataConfig(phrase="hey nova", n_positive=120, n_adversarial=40, n_speech=10, n_words=10, n_noise=0,
                     n_babble=0, engines=("kokoro",), kokoro_mix_prob=0.6)
    jobs = plan(cfg)
    base, base_splits = kokoro_voice_plan({"kokoro": b}, cfg)
    splits = assign_splits([j.speaker for j in jobs] + [v.speaker for v in base], cfg)
    voice_split: dict[str, str] = {}
    n_mix = 0
    for j in jobs:
        bases = [n for n, _ in parse_mix(j.voice)]
        n_mix += len(bases) > 1
        for name in bases:  # a base voice, alone or in a mix, is heard in one split only
            assert voice_split.setdefault(name, splits[j.speaker]) == splits[j.speaker]
            assert base_splits[f"kokoro:{name}"] == splits[j.speaker]
    assert 0.4 * len(jobs) < n_mix < 0.8 * len(jobs)
    assert {splits[j.speaker] for j in jobs if j.kind == "positive"} == {"train", "val", "test"}


def _windows(tiny_data, context: int = 4):
    """TrainWindows of the tiny build and a speech-embedding model whose window holds ``context`` embeddings."""
    from wakeword.dataset.augment import AugmentConfig
    from wakeword.dataset.manifest import read_manifest, select
    from wakeword.dataset.torch_data import TrainWindows, load_clips
    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.models.speech_embedding import window_seconds

    rows = sorted(select(read_manifest(tiny_data), "train"), key=lambda r: r.clip_id)[:12]
    clips = load_clips(rows, tiny_data)
    feat = FeatureConfig(window_s=window_seconds(context))
    model = WakeWordModel("speech_embedding", {"hidden": 8, "context": context}, feat).eval()
    ds = TrainWindows(rows, clips, feat, AugmentConfig(), [clips[0]], [], seed=3)
    return model, ds


def test_cached_embeddings_equal_recomputed_ones_and_resume(tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("openwakeword")
    from wakeword.training import feature_cache
    from wakeword.training.feature_cache import train_cache

    monkeypatch.setattr(feature_cache, "CHUNK", 8)  # several resumable chunks for this small set
    model, ds = _windows(tiny_data)
    emb = train_cache(ds, model.backbone, 2, tmp_path, {"w": model.window_len}, progress=False, num_workers=0)
    assert emb.shape == (2 * len(ds), 96, 4) and emb.dtype == np.float16
    for d, i in ((0, 0), (1, 5), (1, len(ds) - 1)):
        ds.set_epoch(d)  # the uncached loop's draw d of clip i
        audio, _, _ = ds[i]
        with torch.no_grad():
            ref = model.backbone.embedding(audio[None])[0].numpy()
        got = np.asarray(emb[d * len(ds) + i], np.float32)
        assert np.abs(got - ref).max() <= 2e-3 * max(1.0, float(np.abs(ref).max()))  # float16 storage
    # a build killed before its last chunks: one chunk on disk, a stale temporary file, no joined array
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("train-")]
    full = np.array(emb)
    (folder / "embeddings.npy").unlink()
    np.save(folder / "part-000000000.npy", full[:8])
    (folder / "part-000000016.123.tmp.npy").write_bytes(b"half a file")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / "claim-000000016").write_text(dead.stdout.strip())  # claimed by a run that died
    reused = folder / "claim-000000008"  # a dead run's old claim whose pid a live process holds now
    reused.write_text(str(os.getppid()))
    os.utime(reused, (time.time() - 3600, time.time() - 3600))
    again = train_cache(ds, model.backbone, 2, tmp_path, {"w": model.window_len}, progress=False, num_workers=0)
    assert np.array_equal(np.asarray(again), full)
    assert not list(folder.glob("part-*[0-9].npy")) and not list(folder.glob("claim-*"))  # joined and removed
    # anything that changes the numbers changes the key
    other = train_cache(ds, model.backbone, 1, tmp_path, {"w": model.window_len}, progress=False, num_workers=0)
    assert len(other) == len(ds) and len([p for p in tmp_path.iterdir() if p.name.startswith("train-")]) == 2


_BUILD_IN_A_PROCESS = """
import logging
import sys
logging.basicConfig(level=logging.INFO)
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_kokoro_cache import _windows
from wakeword.training import feature_cache
feature_cache.CHUNK = 4
model, ds = _windows(Path(sys.argv[2]))
emb = feature_cache.train_cache(ds, model.backbone, 2, Path(sys.argv[3]), {"w": model.window_len}, progress=False,
                                num_workers=0)
np.save(sys.argv[4], np.asarray(emb))
"""

_COMPUTED = re.compile(r"computed (\d+) of \d+ chunks here")


def test_two_runs_building_one_cache_at_once_both_get_it_whole(tiny_data, tmp_path, monkeypatch):
    """`experiment ablation --workers 2`: two runs of one data folder build the same embedding cache at the same
    time; each gets the whole cache, equal to one run's, and no chunk or temporary file is left behind."""
    pytest.importorskip("openwakeword")
    from wakeword.training import feature_cache

    monkeypatch.setattr(feature_cache, "CHUNK", 4)
    model, ds = _windows(tiny_data)
    ref = np.asarray(feature_cache.train_cache(ds, model.backbone, 2, tmp_path / "alone", {"w": model.window_len},
                                               progress=False, num_workers=0))
    tests_dir = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_IN_A_PROCESS, tests_dir, str(tiny_data),
                               str(tmp_path / "shared"), str(tmp_path / f"run{k}.npy")], stderr=subprocess.PIPE,
                              text=True) for k in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    # each chunk computed once: the runs claim chunks, so the second skips what the first is computing
    assert sum(int(m) for log in logs for m in _COMPUTED.findall(log)) == -(-2 * len(ds) // 4), logs
    for k in range(2):
        assert np.array_equal(np.load(tmp_path / f"run{k}.npy"), ref)
    (folder,) = (tmp_path / "shared").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npy"]


def test_the_long_context_head_streams_with_its_track_scores(tiny_data):
    pytest.importorskip("openwakeword")
    from wakeword.inference import Detector

    torch.manual_seed(0)
    model, _ = _windows(tiny_data, context=16)
    assert model.feat.window_s == pytest.approx(1.985)
    det = Detector(model)
    audio = np.random.default_rng(1).normal(0, 0.1, 4 * SAMPLE_RATE).astype(np.float32)
    ref, _ = det.score_track(audio)
    st = det.stream()
    online = np.concatenate([st.feed(audio[i:i + 700]) for i in range(0, len(audio), 700)])
    k = st.contract["first_window"]
    assert st.contract["caches"]["embedding_cache"] == [1, 96, 15]
    assert len(online) >= len(ref) - k > 0
    assert np.abs(online[:len(ref) - k] - ref[k:]).max() < 1e-5


def test_negative_weight_ramp_and_focal_loss():
    from wakeword.training.fit import TrainConfig, window_loss

    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    cfg = TrainConfig(neg_weight=9.0, neg_weight_ramp=True)
    w_half = torch.tensor([1.0, 5.0, 5.0, 1.0])  # halfway: 1 + (9 - 1) / 2
    assert torch.isclose(window_loss(logits, labels, cfg, 50, 100), (bce * w_half).mean())
    assert torch.isclose(window_loss(logits, labels, TrainConfig(), 50, 100), bce.mean())
    p_true = torch.sigmoid(torch.where(labels > 0, logits, -logits))
    focal = window_loss(logits, labels, TrainConfig(focal_gamma=2.0), 0, 100)
    assert torch.isclose(focal, (bce * (1 - p_true) ** 2).mean(), atol=1e-6)


def test_training_from_the_cache_selects_by_frr_and_calibrates_to_a_false_accept_rate(tiny_data, tmp_path):
    pytest.importorskip("openwakeword")
    from wakeword.training.checkpoint import load_checkpoint
    from wakeword.training.fit import TrainConfig, fit

    cfg = TrainConfig(arch="speech_embedding", model={"hidden": 8, "context": 4}, epochs=2, steps_per_epoch=3,
                      batch_size=8, cache_draws=2, select="frr", threshold_fa_per_hour=5.0, val_noisy=True,
                      neg_weight=4.0, num_workers=0)
    summary = fit(cfg, tiny_data, tmp_path / "run", progress=False)
    best = summary["best"]
    assert {"val_frr_at_target", "val_stream_hours", "val_fa_per_hour_at_threshold"} <= set(best)
    assert best["val_fa_per_hour_at_threshold"] <= 5.0
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["threshold"] == pytest.approx(best["val_threshold"])
    assert any(p.name.startswith("train-") for p in (tiny_data / "cache").iterdir())
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 2
    with pytest.raises(ValueError, match="frozen embedding"):
        fit(TrainConfig(cache_draws=2, epochs=1, steps_per_epoch=1), tiny_data, tmp_path / "run2", progress=False)
    # a stream far too short for 0.5 FA/h: the threshold is extrapolated from its highest false-accept peaks
    tail = fit(TrainConfig(arch="speech_embedding", model={"hidden": 8, "context": 4}, epochs=1, steps_per_epoch=3,
                           batch_size=8, cache_draws=2, threshold_fa_per_hour=0.5, threshold_tail=True,
                           val_noisy=True, num_workers=0), tiny_data, tmp_path / "run3", progress=False)["best"]
    assert tail["val_stream_hours"] * 0.5 < 3 and tail["val_tail_peaks"] >= 5
    assert tail["val_threshold"] > tail["val_threshold_measured"] == tail["val_threshold_fa0.5"]
    assert load_checkpoint(tmp_path / "run3" / "best.pt")["threshold"] == pytest.approx(tail["val_threshold"])
    with pytest.raises(ValueError, match="threshold_tail"):
        fit(TrainConfig(arch="speech_embedding", model={"hidden": 8, "context": 4}, epochs=1, steps_per_epoch=1,
                        cache_draws=2, threshold_tail=True, num_workers=0), tiny_data, tmp_path / "run4",
            progress=False)


def test_bench_scores_through_shared_embeddings_equal_the_checkpoints_own(tmp_path, speech_audio):
    """An ablation benches many heads on one frozen embedding: embeddings of the bench audio are computed once and
    shared; the scores equal the checkpoint's own, and the CPU cost is reported as not measured."""
    pytest.importorskip("openwakeword")
    from wakeword.evaluation.bench import BenchConfig, PreparedSet, score_detector
    from wakeword.evaluation.detectors import load_detector
    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.models.speech_embedding import window_seconds
    from wakeword.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    m = WakeWordModel("speech_embedding", {"hidden": 8, "context": 16}, FeatureConfig(window_s=window_seconds(16)))
    save_checkpoint(tmp_path / "m.pt", m.eval(), {"train": {}}, metrics={}, extra={"threshold": 0.7})
    audio = np.concatenate([speech_audio, speech_audio[::-1]]).astype(np.float32)
    ps = PreparedSet("s", None, [("p", audio[: 3 * SAMPLE_RATE])], [("n1", audio), ("n2", audio[::2].copy())], [])
    ref, ref_cost = score_detector(load_detector(f"a={tmp_path / 'm.pt'}"), ps, BenchConfig(), progress=False)
    for _ in range(2):  # computed, then read back from the folder
        got, cost = score_detector(load_detector(f"a={tmp_path / 'm.pt'}", embedding_cache=tmp_path / "emb"), ps,
                                   BenchConfig(), progress=False)
        assert np.allclose(got.pos_scores, ref.pos_scores, atol=1e-5)
        assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(got.neg_streams, ref.neg_streams))
        assert np.isnan(cost["cpu_s_per_audio_hour"]) and ref_cost["cpu_s_per_audio_hour"] > 0
    assert len(list((tmp_path / "emb").glob("*.npy"))) == 2  # the positive and the one negative stream


def test_optional_negative_folders_are_used_when_there_as_one_speaker_each(tmp_path):
    import soundfile as sf

    pkg = tmp_path / "fr_CA_f_June"
    (pkg / "digits").mkdir(parents=True)
    for rel in ("hello.wav", "digits/1.wav"):
        sf.write(pkg / rel, np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32), SAMPLE_RATE)
    cfg = DataConfig(n_positive=0, n_adversarial=0, n_speech=0, n_words=0, n_noise=0, engines=("espeak-ng",),
                     optional_negative_dirs=(str(pkg), str(tmp_path / "not_installed")))
    jobs = [j for j in plan(cfg) if j.engine == "user"]
    assert len(jobs) == 2 and {j.speaker for j in jobs} == {"user:fr_CA_f_June"}  # sub-folders: the same person
    assert all(j.kind == "speech" and j.label == 0 for j in jobs)


def test_optional_negative_patterns_name_one_speaker_per_folder_and_leave_out_the_phrase(tmp_path):
    """``.../voices/*`` names every voice folder as its own speaker (a name two packages share gets its parent), and a
    clip whose file name says the phrase is not used as a negative."""
    import soundfile as sf

    noise = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    for rel in ("game/voices/British/Hello.ogg", "game/voices/British/Hey_Computer.ogg", "game/voices/Robot/Oops.ogg",
                "game/voices/en/Ouch.ogg", "edu/sounds/en/moon_rocket.ogg", "edu/sounds/en/computer.ogg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / rel, noise, SAMPLE_RATE)
    cfg = DataConfig(phrase="hey computer", n_positive=0, n_adversarial=0, n_speech=0, n_words=0, n_noise=0,
                     engines=("espeak-ng",),
                     optional_negative_dirs=(str(tmp_path / "game/voices/*"), str(tmp_path / "edu/sounds/*"),
                                             str(tmp_path / "nothing/*")))
    jobs = {Path(j.path).name: j.speaker for j in plan(cfg) if j.engine == "user"}
    assert jobs == {"Hello.ogg": "user:British", "Oops.ogg": "user:Robot", "Ouch.ogg": "user:voices/en",
                    "moon_rocket.ogg": "user:sounds/en", "computer.ogg": "user:sounds/en"}  # "computer" alone is not it
    assert says_phrase(Path("x/Hey_Computer.ogg"), "Hey computer!") and not says_phrase(Path("x/Hey.ogg"), "hey computer")


def test_the_operating_point_is_measured_without_near_phrases(tiny_run, tiny_data, caplog):
    """FRR selection and the calibrated threshold use a stream without the near-phrases (a real stream rarely
    holds them); clip pAUC still scores them, and with nothing excluded the stream holds every negative."""
    from dataclasses import replace

    from wakeword.dataset.manifest import read_manifest, select
    from wakeword.dataset.torch_data import load_clips
    from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint
    from wakeword.training.fit import TrainConfig, _TorchScorer, stream_validation

    model = model_from_checkpoint(load_checkpoint(tiny_run / "best.pt")).eval()
    rows = select(read_manifest(tiny_data), "val")
    clips = load_clips(rows, tiny_data)
    cfg = TrainConfig(threshold_fa_per_hour=5.0)
    real_like = stream_validation(_TorchScorer(model, "cpu"), rows, clips, cfg)
    everything = stream_validation(_TorchScorer(model, "cpu"), rows, clips, replace(cfg, operating_exclude_kinds=()))
    assert real_like["val_pauc"] == everything["val_pauc"]  # clip pAUC sees every negative either way
    hours = lambda keep: sum(r.duration_s for r in rows if r.label == 0 and keep(r)) / 3600  # noqa: E731
    assert any(r.kind == "adversarial" for r in rows)
    assert real_like["val_stream_hours"] < everything["val_stream_hours"]
    # scored time (a stream loses its last window), so compare shares, not absolute hours
    share = real_like["val_stream_hours"] / everything["val_stream_hours"]
    assert share == pytest.approx(hours(lambda r: r.kind != "adversarial") / hours(lambda r: True), rel=0.1)
    assert real_like["val_fa_per_hour_at_threshold"] <= 5.0
    # every negative of an excluded kind: nothing is left to cut from, so the stream is every negative, with a warning
    negative_kinds = tuple({r.kind for r in rows if r.label == 0})
    with caplog.at_level("WARNING", logger="wakeword"):
        all_out = stream_validation(_TorchScorer(model, "cpu"), rows, clips,
                                    replace(cfg, operating_exclude_kinds=negative_kinds))
    assert all_out["val_stream_hours"] == everything["val_stream_hours"]
    assert "operating point is measured on every negative" in caplog.text


def test_streams_without_cuts_every_score_that_hears_an_excluded_clip():
    """The operating point's stream comes from the one scoring pass: scores overlapping a near-phrase are cut out."""
    from wakeword.evaluation.scoring import SetScores
    from wakeword.training.fit import streams_without

    hop, span = 0.5, 1.0  # a score every 0.5 s, each hearing 1 s
    s0 = np.arange(13, dtype=np.float32)  # stream 0: clips a (0-3 s), near (3-4 s), b (4-7 s): scores start 0..6 s
    s1 = np.arange(5, dtype=np.float32) + 100  # stream 1: clip c only
    sc = SetScores(np.array([0.9]), np.zeros(4), [s0, s1], hop, ["a", "near", "b", "c"], [], [],
                   [(0, 0.0), (0, 3.0), (0, 4.0), (1, 0.0)], span)
    out = streams_without(sc, {"near"}, {"a": 3.0, "near": 1.0, "b": 3.0, "c": 3.0})
    # the scores starting at 2.5, 3.0 and 3.5 s hear part of [3, 4): indices 5-7 cut; 0-4 and 8-12 stay
    assert [list(x) for x in out] == [[0, 1, 2, 3, 4], [8, 9, 10, 11, 12], list(s1)]
    assert streams_without(sc, set(), {})[0] is s0
    # every kept clip sits next to an excluded one: nothing is left to cut from, so the operating point falls back
    # to every negative in stream_validation (streams_without itself returns no piece)
    tight = SetScores(np.array([0.9]), np.zeros(3), [np.arange(2, dtype=np.float32)], hop, ["x", "w", "y"], [], [],
                      [(0, 0.0), (0, 0.6), (0, 1.1)], span)
    assert streams_without(tight, {"x", "y"}, {"x": 0.6, "w": 0.5, "y": 0.6}) == []
