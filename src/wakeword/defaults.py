"""Every default the library shares, defined once (a leaf module: it imports nothing from the package).

Change one here and the data build, training, evaluation, the benchmark, the CLI and the UI follow.
"""
from __future__ import annotations

SAMPLE_RATE = 16_000  # Hz; the one rate of the front end, training, evaluation and export (all audio is resampled)
WINDOW_S = 1.0  # seconds of audio the classifier sees at once (a longer positive clip is skipped by the build)

FALLBACK_THRESHOLD = 0.5  # score threshold of a model that records no calibrated threshold of its own
MAX_FPR = 0.1  # the false-positive-rate range of the clip pAUC (normalised partial AUC over FPR <= MAX_FPR)
REFRACTORY_S = 1.0  # seconds: a detector fires at most once per this long (a false accept is a rising crossing)
FA_TARGETS = (0.1, 0.5, 1.0)  # false accepts per hour at which false-reject rates are reported
STREAM_S = 600.0  # seconds: negatives are scored as continuous streams cut at the first clip boundary after this

# Audio file suffixes read from folders (the data build, evaluation sets, `score`, mining, the UI): what libsndfile
# decodes.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus"})


def model_threshold(stored: float | None) -> float:
    """A model's default threshold: the one it records (calibrated on its validation split when it was trained),
    else ``FALLBACK_THRESHOLD``."""
    return FALLBACK_THRESHOLD if stored is None else float(stored)


def is_audio(path) -> bool:
    """Whether a file name has one of ``AUDIO_EXTENSIONS`` (case-insensitive)."""
    from pathlib import Path

    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


__all__ = ["AUDIO_EXTENSIONS", "FALLBACK_THRESHOLD", "FA_TARGETS", "MAX_FPR", "REFRACTORY_S", "SAMPLE_RATE",
           "STREAM_S", "WINDOW_S", "is_audio", "model_threshold"]
