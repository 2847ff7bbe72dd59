"""Per-sample waveform augmentation: placement, speed, formant shift, reverberation, channel, background at
an SNR, telephone line, gain.

Every draw comes from a generator seeded per sample, so two samples of a batch never share a draw
and a resumed run replays exactly the same augmentation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from wakeword.audio.mixing import (
    band_limit,
    change_speed,
    formant_shift,
    mix_at_snr,
    reverberate,
    synthetic_rir,
    telephone,
)


@dataclass(frozen=True)
class AugmentConfig:
    background_prob: float = 0.8  # probability of mixing a background noise clip
    snr_db: tuple[float, float] = (0.0, 25.0)  # SNR range (dB), drawn per sample
    gain_db: tuple[float, float] = (-20.0, 4.0)  # output gain range (dB), drawn per sample
    speed_prob: float = 0.5  # probability of speed perturbation
    speed_range: tuple[float, float] = (0.88, 1.12)  # speed factors
    rir_prob: float = 0.35  # probability of reverberation
    rt60_s: tuple[float, float] = (0.15, 0.8)  # synthetic room reverberation time range (s)
    user_rir_prob: float = 0.5  # when reverberating and user RIRs exist, chance to use one of them
    channel_prob: float = 0.3  # probability of a band-limited channel (small mic, phone line)
    lowpass_hz: tuple[float, float] = (3400.0, 7500.0)  # low-pass cut-off range (Hz)
    highpass_hz: tuple[float, float] = (60.0, 400.0)  # high-pass cut-off range (Hz)
    phone_prob: float = 0.15  # probability of a telephone line (8 kHz, 300-3400 Hz, mu-law) after mixing
    formant_prob: float = 0.0  # probability of a formant (vocal-tract length) shift: a new speaker
    formant_range: tuple[float, float] = (0.82, 1.22)  # envelope scale factors (drawn log-uniformly)

    def __post_init__(self):
        lo, hi = self.formant_range
        if not 0 < lo <= hi:
            raise ValueError(f"formant_range must be 0 < low <= high, got {self.formant_range}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


def place(clip: np.ndarray, n: int, rng: np.random.Generator, label: int) -> np.ndarray:
    """Cut or pad ``clip`` to ``n`` samples without wrap-around.

    A positive shorter than the window is placed at a random offset with the whole word inside;
    anything longer is randomly cropped (for a positive that is only possible when it barely exceeds).
    """
    out = np.zeros(n, dtype=np.float32)
    if len(clip) <= n:
        off = int(rng.integers(0, n - len(clip) + 1))
        out[off:off + len(clip)] = clip
        return out
    if label == 1:  # keep the centre of the word; trim evenly-ish from both ends
        slack = len(clip) - n
        off = int(rng.integers(slack // 4, slack - slack // 4 + 1))
    else:
        off = int(rng.integers(0, len(clip) - n + 1))
    return clip[off:off + n].copy()


def augment_window(clip: np.ndarray, label: int, n: int, cfg: AugmentConfig, rng: np.random.Generator,
                   noises: list[np.ndarray], rirs: list[np.ndarray]) -> np.ndarray:
    """One training window (n samples) from one clip, with every draw made for this sample only."""
    if rng.random() < cfg.speed_prob:
        sped = change_speed(clip, float(rng.uniform(*cfg.speed_range)))
        if label == 0 or len(sped) <= n:  # never push a positive out of the window
            clip = sped
    x = place(clip, n, rng, label)
    # Drawn only when enabled, so formant_prob 0 replays the draws made before the shift existed.
    if cfg.formant_prob > 0 and rng.random() < cfg.formant_prob:
        lo, hi = np.log(cfg.formant_range[0]), np.log(cfg.formant_range[1])
        x = formant_shift(x, float(np.exp(rng.uniform(lo, hi))))
    if rng.random() < cfg.rir_prob:
        if rirs and rng.random() < cfg.user_rir_prob:
            rir = rirs[int(rng.integers(len(rirs)))]
        else:
            rir = synthetic_rir(rng, cfg.rt60_s)
        x = reverberate(x, rir)
    if rng.random() < cfg.channel_prob:
        x = band_limit(x, float(rng.uniform(*cfg.highpass_hz)), float(rng.uniform(*cfg.lowpass_hz)))
    if noises and rng.random() < cfg.background_prob:
        noise = noises[int(rng.integers(len(noises)))]
        if len(noise) > n:
            off = int(rng.integers(0, len(noise) - n + 1))
            noise = noise[off:off + n]
        if np.any(x):
            x = mix_at_snr(x, noise, float(rng.uniform(*cfg.snr_db)))
        else:
            x = x + noise[:n] if len(noise) >= n else x
    # Drawn only when enabled, so phone_prob 0 replays the draws made before the line existed.
    if cfg.phone_prob > 0 and rng.random() < cfg.phone_prob:
        x = telephone(x, rng)
    x = x * 10 ** (float(rng.uniform(*cfg.gain_db)) / 20)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
