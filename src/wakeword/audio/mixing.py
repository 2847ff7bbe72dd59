"""Noise, reverberation and mixing at a target SNR.

All functions take float32 mono at SAMPLE_RATE and an explicit ``numpy.random.Generator`` so every
draw is reproducible and made per sample.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from wakeword.audio.io import SAMPLE_RATE

NOISE_COLOURS = ("white", "pink", "brown", "blue")


def power(x: np.ndarray) -> float:
    """Mean power of a signal (linear)."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def coloured_noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with spectral slope: white 0, pink -3 dB/oct, brown -6, blue +3. Unit RMS."""
    exponents = {"white": 0.0, "pink": -0.5, "brown": -1.0, "blue": 0.5}
    if colour not in exponents:
        raise ValueError(f"unknown noise colour '{colour}'; known: {list(exponents)}")
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spec *= f ** exponents[colour]
    out = np.fft.irfft(spec, n)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def active_level(audio: np.ndarray, sr: int = SAMPLE_RATE, frame_s: float = 0.02, floor_db: float = 30.0) -> float:
    """Mean power of the active part of a clip: 20 ms frames within ``floor_db`` of the loudest ones
    (the 95th percentile of frame power). A simplified ITU-T P.56 level, so silence padding and pauses
    do not lower a clip's level."""
    n = max(1, int(frame_s * sr))
    frames = audio[: len(audio) // n * n].reshape(-1, n) if len(audio) >= n else audio[None]
    p = np.mean(np.square(frames, dtype=np.float64), axis=1)
    if not np.any(p > 0):
        return 0.0
    ref = np.percentile(p, 95)
    active = p[p >= ref * 10 ** (-floor_db / 10)]
    return float(active.mean())


SIGNAL_LEVELS: dict[str, Callable[[np.ndarray], float]] = {"power": power, "active": active_level}  # how the signal side of an SNR is measured


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, level: str = "power") -> np.ndarray:
    """signal + noise scaled so that 10 log10(L_signal / P_noise) == snr_db: the one SNR mixer.

    level: how the signal's level L is measured: "power" (mean power of the whole signal; training's
    augmentation) or "active" (``active_level``: the active speech only, so the silence around a padded clip
    does not lower it; the benchmark's noisy conditions). The noise is tiled or cut to the signal's length.
    A silent signal is returned unchanged (SNR is undefined for it).
    """
    if len(noise) == 0:
        raise ValueError("empty noise")
    if len(noise) < len(signal):
        noise = np.tile(noise, int(np.ceil(len(signal) / len(noise))))
    noise = noise[: len(signal)]
    ps, pn = SIGNAL_LEVELS[level](signal), power(noise)
    if ps <= 0 or pn <= 0:
        return signal.astype(np.float32)
    scale = np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return (signal + scale * noise).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, rt60_s: tuple[float, float] = (0.15, 0.8),
                  sr: int = SAMPLE_RATE) -> np.ndarray:
    """A room impulse response: direct path, sparse early reflections, exponentially decaying tail.

    rt60 drawn uniformly in ``rt60_s`` (seconds). Normalised so the direct path has unit amplitude.
    """
    rt60 = rng.uniform(*rt60_s)
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # 60 dB decay at rt60
    tail *= rng.uniform(0.1, 0.4)
    early = np.zeros(n)
    for _ in range(rng.integers(3, 9)):
        idx = rng.integers(int(0.002 * sr), max(int(0.05 * sr), int(0.002 * sr) + 1))
        if idx < n:
            early[idx] += rng.uniform(-0.6, 0.6)
    rir = tail + early
    rir[0] = 1.0
    return rir.astype(np.float32)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room response, keep the original length and peak level."""
    wet = fftconvolve(audio, rir)[: len(audio)]
    peak_in, peak_out = np.abs(audio).max(), np.abs(wet).max()
    if peak_out > 0:
        wet *= peak_in / peak_out
    return wet.astype(np.float32)


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation by resampling (tempo and pitch together, like Kaldi's speed perturb)."""
    if abs(factor - 1.0) < 1e-3:
        return audio
    n_out = max(1, int(round(len(audio) / factor)))
    x_old = np.arange(len(audio))
    x_new = np.linspace(0, len(audio) - 1, n_out)
    return np.interp(x_new, x_old, audio).astype(np.float32)


def band_limit(audio: np.ndarray, low_hz: float | None, high_hz: float | None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """4th-order Butterworth high-pass at ``low_hz`` and/or low-pass at ``high_hz`` (None: skip).

    Imitates small microphones, telephone channels and cheap loudspeakers.
    """
    out = audio.astype(np.float64)
    if low_hz:
        out = sosfilt(butter(4, low_hz, "highpass", fs=sr, output="sos"), out)
    if high_hz and high_hz < sr / 2:
        out = sosfilt(butter(4, high_hz, "lowpass", fs=sr, output="sos"), out)
    return out.astype(np.float32)


def mu_law(audio: np.ndarray, levels: int = 256) -> np.ndarray:
    """G.711-style companding quantizer: mu-law encode to ``levels`` steps and decode (input in [-1, 1])."""
    mu = levels - 1
    x = np.clip(audio, -1.0, 1.0).astype(np.float64)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def telephone(audio: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A narrow-band phone line: band-pass (~300-3400 Hz), 8 kHz sampling, 8-bit mu-law, back to ``sr``.

    Telephone prompts, hold music and calls on speakerphone reach a device like this; nothing above
    4 kHz survives and the quantization noise follows the signal level. Length is preserved.
    """
    from scipy.signal import resample_poly

    x = band_limit(audio, float(rng.uniform(200.0, 400.0)), float(rng.uniform(3000.0, 3600.0)), sr)
    narrow = resample_poly(x, 1, sr // 8000)
    peak = float(np.abs(narrow).max())
    if peak > 0:  # the line has its own level: quantize at a drawn loudness, restore afterwards
        level = float(rng.uniform(0.1, 0.9))
        narrow = mu_law(narrow * (level / peak)) * (peak / level)
    out = resample_poly(narrow, sr // 8000, 1)[: len(audio)]
    if len(out) < len(audio):
        out = np.pad(out, (0, len(audio) - len(out)))
    return out.astype(np.float32)


def formant_shift(audio: np.ndarray, factor: float, n_fft: int = 512, hop: int = 128, n_ceps: int = 24) -> np.ndarray:
    """Move the spectral envelope (formants: vocal-tract length) by ``factor``, keeping pitch and timing.

    Per STFT frame the log magnitude is split by cepstral liftering into a smooth envelope (the first
    ``n_ceps`` quefrencies) and the fine structure (harmonics of the pitch); only the envelope is
    resampled along frequency (envelope'(f) = envelope(f / factor)), the fine structure and phase are
    kept, and the frames are overlap-added back. ``factor`` > 1 gives a shorter vocal tract (a child's
    or a smaller speaker's formants), < 1 a longer one. Length and RMS level are preserved. A new speaker
    from an existing one, which the few natural TTS voices need.
    """
    if abs(factor - 1.0) < 1e-3 or len(audio) < n_fft:
        return audio.astype(np.float32)
    x = np.asarray(audio, np.float64)
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad + hop))
    n_frames = 1 + (len(xp) - n_fft) // hop
    win = np.hanning(n_fft + 1)[:-1]  # periodic Hann: COLA at hop n_fft / 4
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.fft.rfft(xp[idx] * win, axis=1)  # (T, F)
    logmag = np.log(np.abs(spec) + 1e-9)
    ceps = np.fft.irfft(logmag, n=n_fft, axis=1)
    ceps[:, n_ceps:n_fft - n_ceps + 1] = 0.0
    env = np.fft.rfft(ceps, axis=1).real  # smooth log envelope, (T, F)
    freqs = np.arange(spec.shape[1], dtype=np.float64)
    src = np.clip(freqs / factor, 0, len(freqs) - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, len(freqs) - 1)
    frac = src - lo
    warped = env[:, lo] * (1 - frac) + env[:, hi] * frac
    new = spec * np.exp(warped - env)
    frames = np.fft.irfft(new, n=n_fft, axis=1) * win
    out = np.zeros(len(xp))
    norm = np.zeros(len(xp))
    np.add.at(out, idx, frames)
    np.add.at(norm, idx, np.broadcast_to(win * win, frames.shape))
    out = (out / np.maximum(norm, 1e-8))[pad:pad + len(x)]
    p_in, p_out = power(x), power(out)
    if p_out > 0:
        out *= np.sqrt(p_in / p_out)
    return out.astype(np.float32)
