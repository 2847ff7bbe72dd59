"""The torch Dataset over the manifest: windows of audio, augmented per sample for training."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from wakeword.audio.io import AudioError, load_audio
from wakeword.dataset.augment import AugmentConfig, augment_window
from wakeword.dataset.manifest import ClipRow
from wakeword.features.logmel import FeatureConfig

logger = logging.getLogger(__name__)


def load_clips(rows: list[ClipRow], data_dir: str | Path, progress: bool = False) -> list[np.ndarray]:
    """Audio of each row (float32 mono at the project rate)."""
    out = []
    for r in tqdm(rows, desc="loading clips", disable=not progress):
        out.append(load_audio(Path(data_dir) / r.path))
    return out


def load_dir_audio(dirs: tuple[str, ...], max_seconds: float = 60.0) -> list[np.ndarray]:
    """All readable audio files under ``dirs`` (``~`` expanded; unreadable files are logged and skipped). A folder
    that is not there is an error naming it; one without audio files is logged."""
    from wakeword.dataset.build import AUDIO_EXTS

    out = []
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"folder not found: {root} (from {d!r})")
        n = len(out)
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix.lower() in AUDIO_EXTS:
                try:
                    out.append(load_audio(p, max_seconds=max_seconds))
                except AudioError as exc:
                    logger.warning("skipping %s: %s", p, exc)
        if len(out) == n:
            logger.warning("no readable audio file in %s", root)
    return out


class TrainWindows(Dataset):
    """Training windows: item (index) -> (audio (samples,), label, key).

    The augmentation generator is seeded by (seed, epoch, index): per sample, reproducible, and
    different every epoch. Call ``set_epoch`` at the start of each epoch.
    """

    def __init__(self, rows: list[ClipRow], clips: list[np.ndarray], feat: FeatureConfig, aug: AugmentConfig,
                 noises: list[np.ndarray], rirs: list[np.ndarray], seed: int):
        if not rows:
            raise ValueError("no training clips")
        self.rows, self.clips, self.feat, self.aug = rows, clips, feat, aug
        self.noises, self.rirs, self.seed, self.epoch = noises, rirs, seed, 0
        self.labels = np.array([r.label for r in rows], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def window(self, draw: int, i: int) -> np.ndarray:
        """Augmentation draw ``draw`` of clip ``i``: (samples,) float32, the same numbers every time it is asked."""
        rng = np.random.default_rng([self.seed, draw, i])
        return augment_window(self.clips[i], int(self.labels[i]), self.feat.window_samples, self.aug, rng,
                              self.noises, self.rirs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        """-> (audio (samples,), label, key (2,) = (epoch, index): identifies this exact draw)."""
        return torch.from_numpy(self.window(self.epoch, i)), int(self.labels[i]), torch.tensor([self.epoch, i])


def sample_weights(rows: list[ClipRow], positive_fraction: float, adversarial_fraction: float) -> np.ndarray:
    """Per-clip sampling weights giving the requested share of positives and adversarial negatives.

    The remaining share goes to the other negatives (speech, noise, user negatives), so class balance
    does not depend on how many clips of each kind the build produced.
    """
    kinds = np.array(["positive" if r.label == 1 else "adversarial" if r.kind in ("adversarial", "hard_negative")
                      else "other" for r in rows])
    shares = {"positive": positive_fraction, "adversarial": adversarial_fraction,
              "other": 1.0 - positive_fraction - adversarial_fraction}
    present = {k for k in shares if np.any(kinds == k)}
    if "positive" not in present:
        raise ValueError("the training split has no positive clips")
    total = sum(shares[k] for k in present)
    w = np.zeros(len(rows))
    for k in present:
        m = kinds == k
        w[m] = shares[k] / total / m.sum()
    return w


def pad_for_scoring(audio: np.ndarray, feat: FeatureConfig, pad_s: float | None = None) -> np.ndarray:
    """A clip with silence on both sides (default half a window), so the word can sit anywhere."""
    pad = int((feat.window_s / 2 if pad_s is None else pad_s) * feat.sample_rate)
    out = np.concatenate([np.zeros(pad, np.float32), audio.astype(np.float32), np.zeros(pad, np.float32)])
    if len(out) < feat.window_samples:
        out = np.concatenate([out, np.zeros(feat.window_samples - len(out), np.float32)])
    return out


def balance_engines(rows: list[ClipRow], weights: np.ndarray) -> np.ndarray:
    """Reweight so every TTS engine has the same share of the sampled positives as of the sampled negatives.

    Why: when one engine speaks mostly positives (Kokoro, the slow natural voice, was planned onto positives first),
    a detector can learn the engine ("sounds natural") instead of the phrase, and then fires on real speech, which
    sounds natural too. Each engine's weight within a label is scaled to that engine's share of all sampled windows;
    engines that speak only one label keep their clips but at that overall share. Class totals are unchanged.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    labels = np.array([r.label for r in rows])
    engines = np.array([r.engine for r in rows])
    overall = {e: w[engines == e].sum() / w.sum() for e in set(engines)}
    for lab in (0, 1):
        m = labels == lab
        total = w[m].sum()
        if total <= 0:
            continue
        present = {e for e in set(engines[m])}
        norm = sum(overall[e] for e in present)
        for e in present:
            me = m & (engines == e)
            w[me] *= (overall[e] / norm) * total / w[me].sum()
    return w
