"""The idempotent, resumable data build: plan jobs from a config, run what is missing.

Every job (one TTS rendering, one user file, one noise clip) has an id derived from everything that
determines its output. Finished clips are appended to the manifest as they complete and failures to
``skipped.jsonl``, so a killed build resumes exactly where it stopped, and re-running a finished
build does nothing. Audio is stored once per sha256.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf
from tqdm import tqdm

from wakeword.audio.io import (
    SAMPLE_RATE,
    AudioError,
    load_audio,
    quantize_pcm16,
    trim_silence,
    wav_bytes,
)
from wakeword.audio.mixing import NOISE_COLOURS, coloured_noise
from wakeword.audio.music import synth_music
from wakeword.audio.tts import BACKENDS, Prosody, Voice, available_backends
from wakeword.dataset.manifest import ClipRow, append_rows, read_manifest, writer_lock
from wakeword.dataset.text import (
    adversarial_texts,
    corpus_sentences,
    normalise,
    sentence_texts,
    speech_texts,
    word_texts,
)
from wakeword.defaults import AUDIO_EXTENSIONS, WINDOW_S

logger = logging.getLogger(__name__)

AUDIO_EXTS = AUDIO_EXTENSIONS  # the suffixes read from user folders (wakeword.defaults)


@dataclass(frozen=True)
class DataConfig:
    phrase: str = "computer"  # the wake phrase, as typed
    seed: int = 0  # makes the plan (texts, voices, prosody, splits) reproducible
    n_positive: int = 600  # synthetic positives
    n_adversarial: int = 600  # near-miss negatives made from the phrase
    n_speech: int = 400  # general negative speech
    n_noise: int = 40  # synthetic coloured-noise clips
    n_babble: int = 20  # babble clips made from the build's own negative speech
    n_words: int = 600  # isolated common words (single-word negatives, like people say to each other;
    #                     cut real-voice false accepts in the ablation, docs/RESULTS.md)
    n_sentences: int = 0  # natural English sentences from sentence_corpora (kind "sentence"): people talking, where
    #                       the "speech" texts are 40 written sentences and random word sequences
    sentence_corpora: tuple[str, ...] = ("/usr/share/games/fortunes",)  # text files, folders or patterns of sentences
    #                       (Debian's fortunes package by default, scripts/setup.sh installs it; missing: skipped)
    n_music: int = 0  # synthetic music clips (negatives, and background for mixing like noise; off by
    #                   default: it did not help on real voices in the ablation, docs/RESULTS.md)
    music_s: float = 8.0  # seconds per synthetic music clip
    noise_s: float = 5.0  # seconds per synthetic noise / babble clip
    engines: tuple[str, ...] = ()  # TTS engines to use; () = every installed one
    # Share of clips per engine. festival renders ~2.5 clips/s against 20-50 for the others
    # (docs/BENCHMARKS.md), so it gets a smaller share to keep the build fast.
    # Kokoro is off unless asked for (weight > 0 here or in engine_weights_by_kind): Kokoro voices, planned onto the
    # positives, made real-voice results worse (+0.18 FRR at 0.5 FA/h, docs/RESULTS.md, issue #16); an equal share in
    # every kind is not measured yet and costs ~2.5 CPU s a clip.
    engine_weights: dict = field(default_factory=lambda: {"espeak-ng": 3.0, "flite": 2.0, "festival": 0.6,
                                                          "piper": 2.0, "kokoro": 0.0})
    # Per-kind overrides of engine_weights ({kind: {engine: weight}}): Kokoro (natural voices, ~2.5 CPU s a
    # clip against 0.02-0.4 s for the others) is worth most on positives and near-phrases.
    engine_weights_by_kind: dict = field(default_factory=dict)
    kokoro_mix_prob: float = 0.6  # share of Kokoro clips spoken by a convex mix of 2-3 base voices (a new speaker)
    kokoro_accented: bool = True  # also Kokoro's 26 non-English voices reading English (accented speakers)
    rate_range: tuple[float, float] = (0.8, 1.3)  # speaking-rate factors drawn per clip
    pitch_range: tuple[float, float] = (0.75, 1.3)  # pitch factors drawn per clip
    val_frac: float = 0.15  # fraction of speakers held out for validation
    test_frac: float = 0.15  # fraction of speakers held out for test
    positive_dirs: tuple[str, ...] = ()  # user folders of real wake-word recordings
    negative_dirs: tuple[str, ...] = ()  # user folders of speech / long recordings that are not the phrase
    noise_dirs: tuple[str, ...] = ()  # user folders of background noise, music
    optional_negative_dirs: tuple[str, ...] = ()  # like negative_dirs, but a folder that is not there is skipped
    #                                               (system packages such as Debian's Asterisk prompts: real speech)
    window_s: float = WINDOW_S  # classifier window; longer positives are skipped with a reason
    max_file_s: float = 600.0  # user files are read this much at a time (a longer negative / noise file
    #                            becomes several jobs, so all of it is used; a longer positive is skipped)
    chunk_s: float = 10.0  # long user negatives/noise are cut into chunks of this length
    min_positive_s: float = 0.2  # user positives with less sound than this (after trimming silence) are skipped
    workers: int = 3  # parallel TTS jobs (threads driving engine subprocesses)
    train_speakers: tuple[str, ...] = ("person:piper-joe",)  # always in train (the only neural voice)

    def to_dict(self) -> dict:
        return asdict(self)

    # (low, high, low included); checked with the types on load: wakeword.validation
    LIMITS: ClassVar[dict[str, tuple]] = {
        "n_positive": (0, None, True), "n_adversarial": (0, None, True), "n_speech": (0, None, True),
        "n_noise": (0, None, True), "n_babble": (0, None, True), "n_words": (0, None, True),
        "n_sentences": (0, None, True), "n_music": (0, None, True), "music_s": (0, 600, False), "noise_s": (0, 600, False),
        "val_frac": (0, 1, True), "test_frac": (0, 1, True), "window_s": (0, 10, False),
        "max_file_s": (0, None, False), "chunk_s": (0.25, None, True), "workers": (1, 64, True),
        "min_positive_s": (0, None, True), "kokoro_mix_prob": (0, 1, True)}

    def __post_init__(self) -> None:
        from wakeword.validation import ConfigError

        problems = self.problems({f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ConfigError("data config", problems)

    @classmethod
    def problems(cls, d: dict) -> list[str]:
        """One line per problem of mapping ``d`` as a data config (key, value, what is expected)."""
        from wakeword.validation import check_config

        problems = check_config(cls, d, "data")
        if isinstance(d.get("phrase"), str):
            problems += phrase_problems(d["phrase"])
        fracs = [d.get(k, getattr(cls, k)) for k in ("val_frac", "test_frac")]
        if not problems and sum(fracs) >= 1:
            problems.append(f"data.val_frac + data.test_frac = {sum(fracs)}: expected < 1 (something must be left "
                            "to train on)")
        return problems

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        from wakeword.validation import ConfigError, yaml_numbers

        d = yaml_numbers(cls, d)
        problems = cls.problems(d) if isinstance(d, dict) else [f"data: expected a mapping, got {d!r}"]
        if problems:
            raise ConfigError("data config", problems)
        d = dict(d)
        for k in ("engines", "train_speakers", "rate_range", "pitch_range", "positive_dirs", "negative_dirs", "noise_dirs",
                  "optional_negative_dirs", "sentence_corpora"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)


MAX_PHRASE_CHARS = 64  # a wake phrase is a few words; longer text is a sentence, not a trigger
MAX_PHRASE_WORDS = 6


def phrase_problems(phrase: str) -> list[str]:
    """Why ``phrase`` cannot be a wake phrase ([] when it can)."""
    words = normalise(phrase).split()
    if not words:
        return [f"data.phrase = {phrase!r}: expected a non-empty phrase with letters or digits in it"]
    out = []
    if len(phrase) > MAX_PHRASE_CHARS:
        out.append(f"data.phrase = {phrase[:40]!r}...: expected at most {MAX_PHRASE_CHARS} characters")
    if len(words) > MAX_PHRASE_WORDS:
        out.append(f"data.phrase = {phrase[:40]!r}: expected at most {MAX_PHRASE_WORDS} words")
    return out


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: str  # positive / adversarial / speech / word / music / noise
    label: int
    engine: str
    voice: str
    speaker: str
    text: str = ""
    prosody: tuple = ()  # (rate, pitch, variant, noise) for TTS jobs
    path: str = ""  # user file
    colour: str = ""  # synthetic noise colour
    seed: int = 0
    offset_s: float = 0.0  # user file: where this job's part starts (seconds)
    file_s: float = 0.0  # user file: its whole duration (seconds; 0 when unknown)
    chunk_split: bool = False  # user negative / noise file without a speaker id: its chunks are split
    #                            train / val / test in contiguous blocks of time (split_of_chunk)


def _job_id(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stratum(speaker: str) -> str:
    return speaker.split(":", 1)[0]


def _mix_bases(speaker: str) -> list[str]:
    """'kokoro:a+b' -> ['kokoro:a', 'kokoro:b'] (a voice mix); [] for a single speaker."""
    family, _, ids = speaker.partition(":")
    return [f"{family}:{i}" for i in ids.split("+")] if "+" in ids else []


def assign_splits(speakers: list[str], cfg: DataConfig) -> dict[str, str]:
    """Speaker -> split, disjoint by speaker, stratified by speaker family (espeak / person / user / noise).

    Within each family speakers are ordered by a seeded hash; the first ones go to test, the next to
    val, so every family with 3+ speakers contributes unseen speakers to both held-out splits.
    """
    by_stratum: dict[str, list[str]] = {}
    out = {s: "train" for s in cfg.train_speakers}
    mixes = {s for s in speakers if _mix_bases(s)}
    singles = (set(speakers) - mixes) | {b for m in mixes for b in _mix_bases(m)}
    for s in sorted(singles - set(out)):
        by_stratum.setdefault(_stratum(s), []).append(s)
    for group in by_stratum.values():
        group.sort(key=lambda s: hashlib.sha1(f"{cfg.seed}:{s}".encode()).hexdigest())
        n = len(group)
        n_test = max(1, round(cfg.test_frac * n)) if n >= 3 else 0
        n_val = max(1, round(cfg.val_frac * n)) if n >= 3 else 0
        for i, s in enumerate(group):
            out[s] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    for m in mixes:  # a mix of voices is heard only where its voices are (the planner mixes within a split)
        found = {out[b] for b in _mix_bases(m)}
        if len(found) != 1:
            raise ValueError(f"voice mix {m} spans splits {sorted(found)}")
        out[m] = found.pop()
    return out


def kokoro_voice_plan(backends: dict, cfg: DataConfig) -> tuple[list, dict[str, str]]:
    """Kokoro's base voices for this config and their splits ([], {} without Kokoro).

    Every base voice takes part in the split assignment whether or not a clip uses it alone, so the planner
    (which mixes voices within one split) and the build agree on every voice's split."""
    backend = backends.get("kokoro")
    if backend is None:
        return [], {}
    base = backend.base_voices(accented=cfg.kokoro_accented)
    return base, assign_splits([v.speaker for v in base], cfg)


def kokoro_voice(rng: random.Random, base: list, splits: dict[str, str], first, mix_prob: float) -> Voice:
    """A Kokoro voice for one clip: ``first`` alone, or (with ``mix_prob``) a convex mix of it with 1-2 other base
    voices of the same split, Dirichlet weights, seeded per clip by ``rng``."""
    from wakeword.audio.tts import mix_name

    if rng.random() >= mix_prob:
        return first
    pool = [v for v in base if v.name != first.name and splits[v.speaker] == splits[first.speaker]]
    if not pool:
        return first
    others = rng.sample(pool, min(len(pool), rng.choice((1, 2))))
    raw = [rng.gammavariate(1.0, 1.0) + 0.05 for _ in range(len(others) + 1)]
    weights = [round(w / sum(raw), 3) for w in raw]
    weights[0] = round(1.0 - sum(weights[1:]), 3)
    names = [first.name] + [v.name for v in others]
    name = mix_name(list(zip(names, weights)))
    return Voice("kokoro", name, "kokoro:" + "+".join(sorted(names)))


def _speaker_of_file(path: Path, root: Path, kind: str) -> str:
    """Speaker id of a user file, which decides its split: a Speech-Commands style prefix
    ('abcd1234_nohash_0'), else the sub-folder it is in (one folder per speaker: the same name under
    the positive and the negative folders is the same person), else the file itself."""
    stem = path.stem
    if "_nohash_" in stem:
        return f"user:{stem.split('_nohash_')[0]}"
    rel = path.relative_to(root)
    if len(rel.parts) > 1:
        return f"user:{rel.parts[0]}"
    return f"user-{kind}:{root.name}/{rel}"  # one stratum per kind: splits by file, per kind


def split_of_chunk(t_s: float, file_s: float, cfg: DataConfig) -> str:
    """Split of the chunk starting at ``t_s`` of a ``file_s`` long user recording without a speaker id:
    the first (1 - val - test) of its time trains, then val, then test (contiguous blocks, so
    neighbouring chunks rarely straddle splits)."""
    f = t_s / file_s if file_s > 0 else 0.0
    return "train" if f < 1 - cfg.val_frac - cfg.test_frac else "val" if f < 1 - cfg.test_frac else "test"


def file_fingerprint(path: str | Path) -> str:
    """Size and modification time: a skipped file is read again once it changed."""
    try:
        st = Path(path).stat()
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def optional_dirs(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The optional negative folders that exist. A pattern with ``*`` names every folder it matches, each one
    speaker (``.../voices/*``: one folder per voice, so the voices spread over the splits)."""
    out: list[str] = []
    for pat in patterns:
        full = str(Path(pat).expanduser())
        found = sorted(d for d in glob.glob(full) if Path(d).is_dir()) if glob.has_magic(full) else (
            [full] if Path(full).is_dir() else [])
        if not found:
            logger.info("optional negative folder %s is not there: skipped", pat)
        out += [d for d in found if d not in out]
    return tuple(out)


def optional_speaker(root: Path, optional: tuple[str, ...]) -> str:
    """A system package's folder is one speaker, named by the folder (with its parent when two folders share a
    name: ``ktuberling/sounds/en`` and ``klettres/en``)."""
    same = [d for d in optional if Path(d).name == root.name]
    return f"user:{root.name}" if len(same) <= 1 else f"user:{root.parent.name}/{root.name}"


def says_phrase(path: Path, phrase: str) -> bool:
    """Whether a file's name says the phrase. The system packages read as optional negatives name their clips by
    what they say (``Hello.ogg``, ``moon_rocket.ogg``): one that names the phrase would be a positive labelled 0."""
    def letters(s: str) -> str:
        return "".join(ch for ch in normalise(s) if ch.isalnum())
    target = letters(phrase)
    return bool(target) and target in letters(path.stem.replace("_", " ").replace("-", " "))


def _user_files(dirs: tuple[str, ...]) -> list[tuple[Path, Path]]:
    out = []
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"folder not found: {root}")
        out += [(p, root) for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in AUDIO_EXTS]
    return out


def plan(cfg: DataConfig) -> list[Job]:
    """Every job the config asks for (deterministic in cfg)."""
    rng = random.Random(cfg.seed)
    backends = available_backends(list(cfg.engines) or None)
    jobs: list[Job] = []
    if backends:
        voices = {b.name: b.voices() for b in backends}
        variants = {b.name: b.variants() for b in backends}
        names = [b.name for b in backends if voices[b.name]]
        k_base, k_splits = kokoro_voice_plan({b.name: b for b in backends}, cfg)
        if k_base:
            voices["kokoro"] = k_base

        def tts_jobs(kind: str, label: int, texts: list[str]) -> None:
            base = dict(cfg.engine_weights)
            for n in cfg.engines:  # an engine the user names explicitly is used even where it is off by default
                if not base.get(n, 1.0):
                    base[n] = 1.0
            table = {**base, **cfg.engine_weights_by_kind.get(kind, {})}
            weights = [float(table.get(n, 1.0)) for n in names]
            if sum(weights) <= 0:
                raise ValueError(f"engine weights for {kind} clips are all zero")
            for i, text in enumerate(texts):
                engine = rng.choices(names, weights)[0]
                voice: Voice = voices[engine][i % len(voices[engine])] if kind == "positive" else \
                    rng.choice(voices[engine])
                if engine == "kokoro":
                    voice = kokoro_voice(rng, k_base, k_splits, voice, cfg.kokoro_mix_prob)
                prosody = (round(rng.uniform(*cfg.rate_range), 3), round(rng.uniform(*cfg.pitch_range), 3),
                           rng.choice(variants[engine]), round(rng.uniform(0.4, 0.9), 3))
                jid = _job_id(kind, engine, voice.name, text, prosody)
                jobs.append(Job(jid, kind, label, engine, voice.name, voice.speaker, text, prosody))

        phrase = cfg.phrase.strip()
        # Punctuation changes the engines' prosody (statement, question, exclamation).
        styles = [phrase, phrase + ".", phrase + "!", phrase + "?", phrase + ","]
        tts_jobs("positive", 1, [styles[rng.randrange(len(styles))] for _ in range(cfg.n_positive)])
        tts_jobs("adversarial", 0, adversarial_texts(phrase, cfg.n_adversarial, cfg.seed))
        tts_jobs("speech", 0, speech_texts(phrase, cfg.n_speech, cfg.seed))
        # Planned after the other TTS jobs so adding words to a config leaves their draws unchanged.
        tts_jobs("word", 0, word_texts(phrase, cfg.n_words, cfg.seed))
        if cfg.n_sentences:  # after the words: a folder with sentences holds every other clip of one without
            corpus = corpus_sentences(cfg.sentence_corpora)
            if not corpus:
                logger.warning("data.n_sentences = %d but no sentence corpus was found (%s): no sentence clips",
                               cfg.n_sentences, ", ".join(cfg.sentence_corpora) or "none given")
            tts_jobs("sentence", 0, sentence_texts(phrase, cfg.n_sentences, cfg.seed, corpus))
    else:
        logger.warning("no TTS engine is installed: only user folders and noise will be used")
    for i in range(cfg.n_noise):
        colour = NOISE_COLOURS[i % len(NOISE_COLOURS)]
        jobs.append(Job(_job_id("noise", colour, cfg.seed, i, cfg.noise_s), "noise", 0, "synthetic", colour,
                        f"noise:{colour}-{i % 7}", colour=colour, seed=cfg.seed * 100_003 + i))
    for i in range(cfg.n_music):
        # 13 "composers": the speaker id decides the split, so held-out splits get unheard pieces.
        jobs.append(Job(_job_id("music", cfg.seed, i, cfg.music_s), "music", 0, "synthetic", "music",
                        f"music:{i % 13}", seed=cfg.seed * 100_019 + i))
    optional = optional_dirs(cfg.optional_negative_dirs)
    for dirs, kind, label in ((cfg.positive_dirs, "positive", 1), (cfg.negative_dirs + optional, "speech", 0),
                              (cfg.noise_dirs, "noise", 0)):
        for p, root in _user_files(dirs):
            if str(root) in optional and says_phrase(p, cfg.phrase):
                logger.info("optional negative %s may say the phrase (its name): left out", p)
                continue
            # a system package is one speaker (its sub-folders are the same person)
            speaker = optional_speaker(root, optional) if str(root) in optional else _speaker_of_file(p, root, kind)
            try:
                file_s = sf.info(str(p)).duration
            except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError):
                file_s = 0.0  # unreadable: the job fails when rendered, with the reason
            # chunks of one recording spread over the splits only when no speaker id says who speaks
            chunked = kind != "positive" and speaker.startswith("user-")
            if kind == "positive" or file_s <= cfg.max_file_s:
                jobs.append(Job(_job_id("file", kind, str(p.resolve())), kind, label, "user", str(p), speaker,
                                path=str(p), file_s=file_s, chunk_split=chunked))
                continue
            for k in range(int(np.ceil(file_s / cfg.max_file_s))):  # the whole file, one part per job
                off = k * cfg.max_file_s
                jobs.append(Job(_job_id("file", kind, str(p.resolve()), off, cfg.max_file_s), kind, label, "user",
                                f"{p}@{off:g}s", speaker, path=str(p), offset_s=off, file_s=file_s,
                                chunk_split=chunked))
    return jobs


def _render(job: Job, cfg: DataConfig, backends: dict) -> list[np.ndarray]:
    """Run one job; returns the clips it produced (several for a chunked long file)."""
    if job.kind == "music":
        rng = np.random.default_rng(job.seed)
        return [synth_music(int(cfg.music_s * SAMPLE_RATE), rng) * rng.uniform(0.1, 1.0)]
    if job.engine == "synthetic":
        n = int(cfg.noise_s * SAMPLE_RATE)
        rng = np.random.default_rng(job.seed)
        return [coloured_noise(job.colour, n, rng) * rng.uniform(0.02, 0.3)]
    if job.engine == "user":
        audio = load_audio(job.path, max_seconds=cfg.max_file_s, offset_seconds=job.offset_s)
        if float(np.abs(audio).max()) < 1e-4:
            raise AudioError("digital silence")
        if job.kind == "positive":
            if len(audio) > 4 * cfg.window_s * SAMPLE_RATE:
                raise AudioError(f"positive longer than {4 * cfg.window_s:.1f} s")
            sound_s = len(trim_silence(audio)) / SAMPLE_RATE
            if sound_s < cfg.min_positive_s:
                raise AudioError(f"positive too short: {sound_s:.3f} s of sound < min_positive_s "
                                 f"{cfg.min_positive_s} s")
            return [audio]
        step = int(cfg.chunk_s * SAMPLE_RATE)
        return [audio[i:i + step] for i in range(0, len(audio), step)]  # too short a tail: dropped in build()
    audio = _cached_tts(job, backends[job.engine])
    if job.kind == "positive" and len(audio) > cfg.window_s * SAMPLE_RATE:
        raise AudioError(f"positive lasts {len(audio) / SAMPLE_RATE:.2f} s > window {cfg.window_s} s")
    return [audio]


def clip_cache_dir() -> Path | None:
    """Where rendered TTS clips are kept across builds (``WAKEWORD_CLIP_CACHE``; "off" disables it).

    A job's id is derived from everything that determines its audio (kind, engine, voice, text, prosody), and a
    plan's negative speech and words do not depend on the phrase, so a second phrase (or a second folder) reuses
    them instead of rendering them again: that is what makes slow natural voices (Kokoro, ~2.5 CPU s a clip)
    affordable for negatives. Delete the folder after upgrading a TTS engine.
    """
    v = os.environ.get("WAKEWORD_CLIP_CACHE", "")
    if v.lower() in ("0", "off", "none", "false"):
        return None
    return Path(v).expanduser() if v else Path("~/.cache/wakeword/clips").expanduser()


def _cached_tts(job: Job, backend) -> np.ndarray:
    """The job's trimmed, peak-normalised rendering: from the clip cache when there, else rendered and stored."""
    root = clip_cache_dir()
    path = root / job.engine / job.job_id[:2] / f"{job.job_id}.npy" if root else None
    if path is not None and path.exists():
        try:
            audio = np.load(path, allow_pickle=False)
            if audio.dtype == np.float32 and audio.ndim == 1 and len(audio) >= int(0.15 * SAMPLE_RATE):
                _CACHE_HITS.append(job.job_id)
                return audio
        except (OSError, ValueError):
            pass  # a torn or foreign file: render again and replace it
    rate, pitch, variant, noise = job.prosody
    voice = Voice(job.engine, job.voice, job.speaker)
    audio = trim_silence(backend.synthesize(job.text, voice, Prosody(rate, pitch, variant, noise)))
    if len(audio) < int(0.15 * SAMPLE_RATE):
        raise AudioError("engine produced (almost) no speech")
    peak = float(np.abs(audio).max())
    audio = (audio * (0.9 / peak) if peak > 0 else audio).astype(np.float32)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
            np.save(tmp, audio, allow_pickle=False)
            tmp.replace(path)
        except OSError as exc:  # a full or read-only cache must not stop the build
            logger.warning("clip cache %s not written: %s", path, exc)
    return audio


_CACHE_HITS: list[str] = []  # job ids served from the clip cache (list.append is thread-safe)


def _babble_jobs(cfg: DataConfig, rows: list[ClipRow]) -> list[tuple[str, str, list[ClipRow]]]:
    """Babble clips per split from that split's own speech (so no speaker crosses splits)."""
    rng = random.Random(cfg.seed + 7)
    out = []
    speech = sorted((r for r in rows if r.kind == "speech" and r.engine != "user"), key=lambda r: r.clip_id)
    if len(speech) < 3:
        return out
    for i in range(cfg.n_babble):
        split = ("train", "train", "train", "val", "test")[i % 5]
        pool = [r for r in speech if r.split == split]
        if len(pool) < 3:
            continue
        parts = rng.sample(pool, min(len(pool), rng.randint(3, 6)))
        out.append((_job_id("babble", [p.clip_id for p in parts], cfg.noise_s), split, parts))
    return out


class BuildState:
    """What is already on disk: manifest ids and hashes, and jobs that were skipped with a reason."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.rows = read_manifest(data_dir)
        self.done = {r.clip_id.split("#")[0] for r in self.rows}
        self.shas = {r.sha256: r.clip_id for r in self.rows}
        self.skip_path = data_dir / "skipped.jsonl"
        self.skipped: dict[str, dict] = {}
        if self.skip_path.exists():
            for line in self.skip_path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.skipped[rec["job_id"]] = rec
                except (json.JSONDecodeError, KeyError):
                    continue
        for job_id in self.done & set(self.skipped):  # skipped once, stored after the file was fixed
            del self.skipped[job_id]
        self.cut_path = data_dir / "cuts.jsonl"
        self.cuts: list[dict] = []  # this build's: what of a used file was left out, and why

    def skip(self, job_id: str, what: str, reason: str, fingerprint: str = "") -> None:
        """Record a job that made nothing; a user file's ``fingerprint`` lets a later build retry it once the
        file changed."""
        rec = {"job_id": job_id, "what": what, "reason": reason, **({"fingerprint": fingerprint} if fingerprint else {})}
        self.skipped[job_id] = rec
        with open(self.skip_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def cut(self, job_id: str, what: str, reason: str) -> None:
        """Record audio of a used file that was left out (a too-short tail)."""
        rec = {"job_id": job_id, "what": what, "reason": reason}
        self.cuts.append(rec)
        with open(self.cut_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def retry(self, job: Job) -> bool:
        """A skipped user file whose content changed since it was skipped."""
        rec = self.skipped.get(job.job_id)
        return bool(rec and job.path and rec.get("fingerprint") and rec["fingerprint"] != file_fingerprint(job.path))

    def store(self, job_id: str, clips: list[np.ndarray], make_row) -> int:
        """Save clips (deduplicated by sha256) and append their rows; returns how many were new."""
        rows = []
        for k, audio in enumerate(clips):
            audio = quantize_pcm16(audio)
            data = wav_bytes(audio)
            sha = hashlib.sha256(data).hexdigest()
            if sha in self.shas:
                continue
            rel = f"clips/{sha[:2]}/{sha}.wav"
            path = self.data_dir / rel
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
            cid = job_id if len(clips) == 1 else f"{job_id}#{k}"
            row = make_row(cid, rel, sha, len(audio) / SAMPLE_RATE)
            rows.append(row)
            self.shas[sha] = cid
        if rows:
            append_rows(self.data_dir, rows)
            self.rows += rows
            self.skipped.pop(job_id, None)  # a file skipped before and fixed since
        else:
            self.skip(job_id, job_id, "duplicate audio (same sha256 already stored)")
        self.done.add(job_id)
        return len(rows)


def build(cfg: DataConfig, data_dir: str | Path, progress: bool = True) -> dict:
    """Build (or complete) the data set in ``data_dir``; returns the build report (also written to disk).

    One writer per folder: a second build (or injection) on it fails at once with DataFolderBusy."""
    with writer_lock(data_dir):
        return _build_locked(cfg, Path(data_dir), progress)


def _build_locked(cfg: DataConfig, data_dir: Path, progress: bool) -> dict:
    t0 = time.time()
    if not cfg.phrase.strip() or not normalise(cfg.phrase):
        raise ValueError("the wake phrase is empty")
    cfg_file = data_dir / "data_config.json"
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text()).get("phrase", "")
        if normalise(old) != normalise(cfg.phrase):
            raise ValueError(f"{data_dir} holds data for the phrase '{old}', not '{cfg.phrase}': "
                             "use another folder (its positives would be negatives here)")
    cfg_file.write_text(json.dumps(cfg.to_dict(), indent=2))
    state = BuildState(data_dir)
    jobs = plan(cfg)
    backends = {b.name: b for b in available_backends(list(cfg.engines) or None)}
    k_base, _ = kokoro_voice_plan(backends, cfg)
    splits = assign_splits([j.speaker for j in jobs] + [v.speaker for v in k_base], cfg)
    todo = [j for j in jobs if j.job_id not in state.done and (j.job_id not in state.skipped or state.retry(j))]
    hits0 = len(_CACHE_HITS)
    logger.info("data build: %d jobs planned, %d to do", len(jobs), len(todo))

    def row_maker(job: Job):
        meta: dict = {"engine": job.engine, "prosody": job.prosody} if job.engine != "user" else {"file": job.path}
        if job.engine == "kokoro":  # base voices and their weights (a mix of voices is a new speaker)
            from wakeword.audio.tts import parse_mix

            meta["voices"] = dict(parse_mix(job.voice))
        voice = job.voice + (f"+{job.prosody[2]}" if job.prosody and job.prosody[2] else "")

        def make(cid, rel, sha, dur):
            k = int(cid.split("#")[1]) if "#" in cid else 0
            split, src = splits[job.speaker], dict(meta)
            if job.engine == "user":
                t = job.offset_s + k * cfg.chunk_s  # where this chunk starts in the file
                if job.kind != "positive":
                    src["offset_s"] = t
                if job.chunk_split:
                    split = split_of_chunk(t, job.file_s, cfg)
            return ClipRow(cid, rel, job.label, job.kind, job.engine, voice, job.speaker, split, round(dur, 4), sha,
                           job.text, json.dumps(src))
        return make

    with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
        futures = {pool.submit(_render, j, cfg, backends): j for j in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="data build", disable=not progress):
            job = futures[fut]
            what = (job.voice if job.engine == "user" else "") or f"{job.engine}:{job.voice}:{job.text}"
            fp = file_fingerprint(job.path) if job.path else ""
            try:
                clips = fut.result()
            except AudioError as exc:
                state.skip(job.job_id, what, str(exc), fp)
                continue
            except Exception as exc:  # an engine crash must not end the build
                logger.exception("job %s failed", job.job_id)
                state.skip(job.job_id, what, f"{type(exc).__name__}: {exc}", fp)
                continue
            if job.engine == "user" and clips and len(clips[-1]) < SAMPLE_RATE // 4:
                tail = clips.pop()
                state.cut(job.job_id, what, f"last {len(tail) / SAMPLE_RATE:.3f} s left out: a chunk needs 0.25 s")
            if not clips:
                state.skip(job.job_id, what, "no usable audio (shorter than 0.25 s)", fp)
                continue
            state.store(job.job_id, clips, row_maker(job))

    for bid, split, parts in _babble_jobs(cfg, state.rows):
        if bid in state.done or bid in state.skipped:
            continue
        n = int(cfg.noise_s * SAMPLE_RATE)
        mix = np.zeros(n, dtype=np.float32)
        rng = np.random.default_rng(int(bid[:8], 16))
        for p in parts:
            a = load_audio(data_dir / p.path)
            a = np.tile(a, int(np.ceil(n / len(a))))[:n]
            mix += np.roll(a, int(rng.integers(0, n))) * rng.uniform(0.5, 1.0)
        mix *= 0.3 / (np.abs(mix).max() + 1e-9)
        state.store(bid, [mix], lambda cid, rel, sha, dur, parts=parts, split=split: ClipRow(
            cid, rel, 0, "noise", "synthetic", "babble", f"babble:{split}", split, round(dur, 4), sha, "",
            json.dumps({"babble_of": [p.clip_id for p in parts]})))

    report = make_report(cfg, state, backends, jobs, time.time() - t0)
    report["tts_from_cache"] = len(_CACHE_HITS) - hits0  # this build's clips read from the clip cache
    (data_dir / "build_report.json").write_text(json.dumps(report, indent=2))
    return report


def make_report(cfg: DataConfig, state: BuildState, backends: dict, jobs: list[Job], seconds: float) -> dict:
    rows = state.rows
    counts = Counter((r.split, r.kind) for r in rows)
    return {
        "phrase": cfg.phrase,
        "engines_used": sorted({r.engine for r in rows} & set(backends)),  # that spoke at least one clip
        "engines_available": sorted(backends),  # installed (Kokoro, for one, speaks only when given a weight)
        "engines_missing": sorted(set(cfg.engines or BACKENDS) - set(backends)),
        "clips": len(rows),
        "hours": round(sum(r.duration_s for r in rows) / 3600, 4),
        "by_split_kind": {f"{s}/{k}": n for (s, k), n in sorted(counts.items())},
        "by_engine": dict(Counter(r.engine for r in rows)),
        "speakers_by_split": {s: sorted({r.speaker for r in rows if r.split == s}) for s in ("train", "val", "test")},
        "jobs_planned": len(jobs),
        "skipped": len(state.skipped),
        "skipped_reasons": dict(Counter(v["reason"].split(":")[0] for v in state.skipped.values())),
        "skipped_detail": list(state.skipped.values())[:200],
        "cuts": len(state.cuts),  # this build's; all builds' in cuts.jsonl
        "cut_detail": state.cuts[:200],
        "seconds": round(seconds, 1),
    }
