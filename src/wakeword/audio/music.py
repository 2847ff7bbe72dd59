"""Synthetic music: melody, chords, bass, drums and sung vowels, drawn from a seeded generator.

Real false accepts come from music as much as from speech (radio, TV, hold music), and tonal,
rhythmic, voice-like sound is what a detector trained on speech and stationary noise has never
heard. This makes varied music from scratch so no recording is needed: every piece has its own
tempo, key, scale, instruments (additive timbres with their own harmonic roll-off and envelope),
and, in some pieces, a "singer": a harmonic source with vibrato through vowel formants. Pieces are
not meant to be pleasant, only to cover the statistics of music (steady pitches, harmonic stacks,
onsets on a beat grid, long tonal notes, sung vowels).

All functions take an explicit ``numpy.random.Generator`` and return float32 mono at ``sr``.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from wakeword.audio.io import SAMPLE_RATE

_SCALES = {  # semitone steps from the tonic
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
}
# (F1, F2, F3) in Hz of a few sung vowels (adult average; the singer's formant scale varies them).
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410),
           (640, 1190, 2390), (490, 1350, 1690))


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _envelope(n: int, sr: int, attack_s: float, decay_s: float, sustain: float, release_s: float) -> np.ndarray:
    """ADSR envelope of ``n`` samples (release inside the note's length)."""
    a, d, r = (max(1, int(t * sr)) for t in (attack_s, decay_s, release_s))
    env = np.full(n, sustain, dtype=np.float64)
    env[:min(a, n)] = np.linspace(0, 1, a)[:n]
    if a < n:
        seg = env[a:a + d]
        env[a:a + len(seg)] = np.linspace(1, sustain, d)[:len(seg)]
    if r < n:
        env[n - r:] *= np.linspace(1, 0, r)
    return env


class _Timbre:
    """An additive instrument: harmonic amplitudes, inharmonicity, envelope shape, vibrato."""

    def __init__(self, rng: np.random.Generator, percussive: bool):
        n_harm = int(rng.integers(3, 14))
        rolloff = rng.uniform(0.6, 2.2)  # amplitude ~ k^-rolloff
        self.amps = np.arange(1, n_harm + 1, dtype=np.float64) ** -rolloff
        if rng.random() < 0.3:  # odd harmonics only (clarinet-, square-like)
            self.amps[1::2] *= 0.05
        self.inharm = rng.uniform(0, 4e-4) if percussive else 0.0
        self.percussive = percussive
        self.attack = rng.uniform(0.002, 0.01) if percussive else rng.uniform(0.01, 0.15)
        self.decay = rng.uniform(0.05, 0.4)
        self.sustain = rng.uniform(0.0, 0.2) if percussive else rng.uniform(0.4, 0.9)
        self.vibrato = (rng.uniform(4, 7), rng.uniform(0, 0.006)) if not percussive else (0.0, 0.0)

    def note(self, hz: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(n) / sr
        rate, depth = self.vibrato
        # instantaneous frequency ratio, integrated to a phase (unit-frequency cycles)
        ratio = 1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) if depth else np.ones(n)
        cycles = np.cumsum(ratio) / sr
        out = np.zeros(n)
        for k, amp in enumerate(self.amps, start=1):
            f = hz * k * np.sqrt(1 + self.inharm * k * k)
            if f >= sr / 2 - 100:
                break
            # higher partials die faster on struck/plucked instruments
            decay = np.exp(-t * k * 1.5) if self.percussive else 1.0
            out += amp * decay * np.sin(2 * np.pi * f * cycles + rng.uniform(0, 2 * np.pi))
        return out * _envelope(n, sr, self.attack, self.decay, self.sustain, min(0.08, n / sr / 4))


def _resonator(x: np.ndarray, f: float, bw: float, sr: int) -> np.ndarray:
    """Two-pole resonance at ``f`` Hz with bandwidth ``bw`` Hz (a formant)."""
    r = np.exp(-np.pi * bw / sr)
    a = [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r]
    return lfilter([1 - r], a, x)


def _sung_note(hz: float, n: int, sr: int, rng: np.random.Generator, formant_scale: float) -> np.ndarray:
    """A sung vowel: glottal-like pulse train (all harmonics, -12 dB/oct) with vibrato, through 3 formants."""
    t = np.arange(n) / sr
    vib = 1 + rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
    phase = 2 * np.pi * np.cumsum(hz * vib) / sr
    src = np.zeros(n)
    for k in range(1, int((sr / 2 - 200) / hz)):
        src += np.sin(k * phase) / k**2
    src += 0.02 * rng.standard_normal(n)  # breath
    f1, f2, f3 = (f * formant_scale for f in _VOWELS[int(rng.integers(len(_VOWELS)))])
    out = _resonator(src, f1, 80, sr) + 0.6 * _resonator(src, f2, 100, sr) + 0.3 * _resonator(src, f3, 120, sr)
    return out * _envelope(n, sr, rng.uniform(0.03, 0.1), 0.1, 0.8, min(0.1, n / sr / 4))


def _drum_hit(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "kick":
        n = int(0.25 * sr)
        t = np.arange(n) / sr
        f = rng.uniform(45, 70) + rng.uniform(60, 120) * np.exp(-t * 30)
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t * rng.uniform(10, 20))
    if kind == "snare":
        n = int(0.2 * sr)
        t = np.arange(n) / sr
        tone = 0.4 * np.sin(2 * np.pi * rng.uniform(160, 240) * t)
        return (tone + rng.standard_normal(n)) * np.exp(-t * rng.uniform(15, 30)) * 0.6
    n = int(0.06 * sr)  # hi-hat: bright noise
    noise = np.diff(rng.standard_normal(n + 1))
    return noise * np.exp(-np.arange(n) / sr * rng.uniform(40, 90)) * 0.25


def synth_music(n: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``n`` samples of a music piece with its own tempo, key, scale and instruments. Peak 0.9.

    Layers (each present with some probability, at least one tonal): chord pad, melody, bass,
    drums, singer. The singer's formants are scaled like vocal tracts of different sizes.
    """
    beat = 60.0 / rng.uniform(60, 170)  # seconds per beat
    tonic = int(rng.integers(45, 62))
    scale = _SCALES[list(_SCALES)[int(rng.integers(len(_SCALES)))]]
    out = np.zeros(n)

    def degree(d: int) -> int:
        return tonic + 12 * (d // len(scale)) + scale[d % len(scale)]

    layers = [name for name, p in (("pad", 0.6), ("melody", 0.8), ("bass", 0.6), ("drums", 0.5), ("singer", 0.45))
              if rng.random() < p] or ["melody"]
    # chord progression: one chord per bar of 4 beats, roots on scale degrees
    bar = int(4 * beat * sr)
    roots = [int(rng.choice([0, 3, 4, 5, 1])) for _ in range(n // max(bar, 1) + 1)]
    if "pad" in layers:
        timbre, gain = _Timbre(rng, percussive=rng.random() < 0.4), rng.uniform(0.2, 0.5)
        for b, root in enumerate(roots):
            start = b * bar
            m = min(bar, n - start)
            if m <= 0:
                break
            for d in (root, root + 2, root + 4):
                out[start:start + m] += gain * timbre.note(_midi_hz(degree(d) + 12), m, sr, rng) / 3
    if "bass" in layers:
        timbre, gain = _Timbre(rng, percussive=rng.random() < 0.5), rng.uniform(0.3, 0.6)
        step = int(beat * sr * rng.choice([1, 2]))
        for i, start in enumerate(range(0, n, step)):
            m = min(step, n - start)
            root = roots[min(start // max(bar, 1), len(roots) - 1)]
            out[start:start + m] += gain * timbre.note(_midi_hz(degree(root) - 12), m, sr, rng)
    for voice in ("melody", "singer"):
        if voice not in layers:
            continue
        timbre, gain = _Timbre(rng, percussive=rng.random() < 0.5), rng.uniform(0.3, 0.7)
        formant_scale = rng.uniform(0.85, 1.25)
        octave = 12 if voice == "melody" else int(rng.choice([0, 12]))
        pos, d = 0, int(rng.integers(0, len(scale)))
        while pos < n:
            m = min(int(beat * sr * rng.choice([0.25, 0.5, 0.5, 1, 1, 1.5, 2])), n - pos)
            if rng.random() < 0.15:  # rest
                pos += m
                continue
            d = int(np.clip(d + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), -3, 2 * len(scale)))
            hz = _midi_hz(degree(d) + octave)
            note = _sung_note(hz, m, sr, rng, formant_scale) if voice == "singer" else timbre.note(hz, m, sr, rng)
            out[pos:pos + m] += gain * note / (np.abs(note).max() + 1e-9)
            pos += m
    if "drums" in layers:
        gain = rng.uniform(0.3, 0.8)
        sixteenth = beat / 4
        pattern = {"kick": [0, 8] + ([10] if rng.random() < 0.5 else []), "snare": [4, 12],
                   "hat": list(range(0, 16, int(rng.choice([1, 2, 4]))))}
        hits = {k: _drum_hit(k, sr, rng) for k in pattern}
        for bar_start in np.arange(0, n / sr, 16 * sixteenth):
            for k, steps in pattern.items():
                for s in steps:
                    i = int((bar_start + s * sixteenth) * sr)
                    if i >= n:
                        continue
                    h = hits[k][: n - i]
                    out[i:i + len(h)] += gain * h * rng.uniform(0.7, 1.0)
    peak = np.abs(out).max()
    return (out * (0.9 / peak) if peak > 0 else out).astype(np.float32)
