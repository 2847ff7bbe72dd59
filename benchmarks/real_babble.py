"""Background files of real recorded talkers for the training augmentation (issue #16, eleventh round).

Real recordings that appear only among the negatives taught the head that "a real recording is not the wake word"
(docs/RESULTS.md, issue #16, third and eleventh rounds). This writes real speech as *backgrounds* instead, mixed
under positives and negatives alike: ``--files`` files of ``--seconds`` each, every one the sum of 1-3 talkers, a
talker being a random run of clips from one folder (one speaker or pack) laid end to end with short pauses, each
talker at a random level within 10 dB. Few long files keep the background pool balanced: the training draws a
background file uniformly, and the demo's data brings ~50 noise and babble clips of its own.

    python benchmarks/real_babble.py --out work/babble_real --files 40 --seconds 60 \
        /usr/share/asterisk/sounds/fr_CA_f_June /usr/share/asterisk/sounds/it_IT_m_Carlo \
        /usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU '/usr/share/games/hedgewars/Data/Sounds/voices/*' \
        '/usr/share/ktuberling/sounds/*' '/usr/share/klettres/*'

Then ``train: {noise_dirs: [work/babble_real]}``. Folders (``*`` patterns allowed) that are not there are skipped.
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from wakeword.audio.io import AudioError, load_audio
from wakeword.defaults import SAMPLE_RATE, is_audio


def talker_folders(patterns: list[str]) -> list[list[Path]]:
    """The audio files of each folder the patterns name (a folder = one talker or pack; empty ones dropped)."""
    out = []
    for pat in patterns:
        for d in sorted(glob.glob(str(Path(pat).expanduser()))):
            files = sorted(p for p in Path(d).rglob("*") if p.is_file() and is_audio(p))
            if files:
                out.append(files)
    return out


def talker(files: list[Path], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one talker: random clips of the folder end to end, 0.1-0.6 s apart."""
    parts: list[np.ndarray] = []
    total, tries = 0, 0
    while total < n and tries < 10 * len(files) + 100:
        tries += 1
        try:
            clip = load_audio(files[int(rng.integers(len(files)))], max_seconds=20.0)
        except AudioError:
            continue
        peak = float(np.max(np.abs(clip))) if len(clip) else 0.0
        if peak <= 1e-4:
            continue
        gap = np.zeros(int(rng.uniform(0.1, 0.6) * SAMPLE_RATE), np.float32)
        parts += [clip / peak * 0.5, gap]
        total += len(clip) + len(gap)
    if not parts:
        return np.zeros(n, np.float32)
    x = np.concatenate(parts)[:n]
    return np.pad(x, (0, n - len(x)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="folders (or * patterns) of real speech, one talker or pack each")
    ap.add_argument("--out", required=True)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    folders = talker_folders(a.folders)
    if not folders:
        print("no audio in any of the folders given", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    n = int(a.seconds * SAMPLE_RATE)
    for i in range(a.files):
        rng = np.random.default_rng([a.seed, i])
        k = int(rng.integers(1, 4))
        who = rng.choice(len(folders), size=min(k, len(folders)), replace=False)
        mix = sum(talker(folders[int(j)], n, rng) * 10 ** (rng.uniform(-10, 0) / 20) for j in who)
        mix = np.asarray(mix, np.float32)
        mix *= 0.5 / max(float(np.max(np.abs(mix))), 1e-6)
        sf.write(out / f"babble_{i:03d}.flac", mix, SAMPLE_RATE)
    print(f"wrote {a.files} files of {a.seconds:g} s from {len(folders)} talker folders to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
