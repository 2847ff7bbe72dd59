"""Loading, resampling and saving audio.

Every waveform inside the suite is float32 mono at ``SAMPLE_RATE`` in [-1, 1]. Anything libsndfile
reads (WAV, FLAC, OGG, any rate, any channel count) is converted on load.
"""
from __future__ import annotations

import io
import logging
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from wakeword.defaults import SAMPLE_RATE, is_audio

logger = logging.getLogger(__name__)


class AudioError(ValueError):
    """A file that cannot be used as audio (unreadable, empty, corrupt)."""


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling. audio: (samples,) float32."""
    if orig_sr == target_sr:
        return audio.astype(np.float32, copy=False)
    if orig_sr <= 0:
        raise AudioError(f"invalid sample rate {orig_sr}")
    g = gcd(int(orig_sr), int(target_sr))
    out = resample_poly(audio.astype(np.float64), target_sr // g, orig_sr // g)
    return out.astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) or (samples, channels) -> (samples,) by averaging channels."""
    if audio.ndim == 1:
        return audio
    return audio.mean(axis=1)


def load_audio(
    source: str | Path | bytes, sr: int = SAMPLE_RATE, max_seconds: float | None = None,
    offset_seconds: float = 0.0,
) -> np.ndarray:
    """Read any libsndfile format and return float32 mono at ``sr``.

    source: a path or the raw bytes of a file. max_seconds: read at most this much (None: all), from
    ``offset_seconds`` on. Raises AudioError with a readable reason for unreadable, corrupt or empty input.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if not isinstance(source, (bytes, bytearray)):  # libsndfile would only say "System error"
        if not Path(source).exists():
            raise AudioError(f"no such file: {name}")
        if Path(source).is_dir():
            raise AudioError(f"{name} is a folder, not an audio file")
    try:
        with sf.SoundFile(handle) as f:
            file_sr = f.samplerate
            if offset_seconds > 0:
                f.seek(int(offset_seconds * file_sr))
            frames = -1 if max_seconds is None else int(max_seconds * file_sr)
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"cannot decode {name}: {exc}") from exc
    except FileNotFoundError as exc:
        raise AudioError(f"no such file: {name}") from exc
    if data.size == 0:
        raise AudioError(f"empty audio: {name}")
    mono = to_mono(data)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"non-finite samples in {name}")
    return resample(mono, file_sr, sr)


def save_wav(path: str | Path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically (a killed process never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    sf.write(tmp, np.clip(audio, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    tmp.replace(path)


def wav_bytes(audio: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV of ``audio`` as bytes (used for hashing and serving)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def quantize_pcm16(audio: np.ndarray) -> np.ndarray:
    """Round-trip through int16 so hashes and stored clips agree exactly."""
    return (np.round(np.clip(audio, -1.0, 1.0) * 32767.0) / 32767.0).astype(np.float32)


def trim_silence(audio: np.ndarray, threshold_db: float = -40.0, pad_s: float = 0.05,
                 sr: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading/trailing parts quieter than ``threshold_db`` below the peak (10 ms frames)."""
    if audio.size == 0:
        return audio
    frame = sr // 100  # 10 ms
    n = len(audio) // frame
    if n == 0:
        return audio
    energy = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(energy / (energy.max() + 1e-12) + 1e-12)
    active = np.flatnonzero(level > threshold_db)
    if active.size == 0:
        return audio[:0]
    pad = int(pad_s * sr)
    start = max(0, active[0] * frame - pad)
    end = min(len(audio), (active[-1] + 1) * frame + pad)
    return audio[start:end]


def list_audio(paths) -> list[Path]:
    """Files to score from a mix of files and folders: a folder gives its audio files (``defaults.AUDIO_EXTENSIONS``,
    recursively, sorted); anything else (a file, a missing path, a folder without audio) is kept as given, so the
    caller reports what is wrong with it."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        found = sorted(f for f in p.rglob("*") if f.is_file() and is_audio(f)) if p.is_dir() else []
        out += found or [p]
    return out
