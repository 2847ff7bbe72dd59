"""Data-build throughput per TTS engine (clips per second with N worker threads) and the embedding cache's size per
hour of audio. Writes JSON and prints a Markdown table (docs/BENCHMARKS.md keeps the figures with this command).

    python benchmarks/data_throughput.py --clips 24 --workers 2 --out docs/data_throughput.json \
        [--engines piper ...] [--cache work/data_k_computer/cache]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from wakeword.audio.io import SAMPLE_RATE
from wakeword.audio.tts import Prosody, available_backends
from wakeword.dataset.text import speech_texts


def engine_throughput(n_clips: int, workers: int, seed: int = 0, engines: tuple[str, ...] = ()) -> dict:
    rng = random.Random(seed)
    texts = ["computer", "hey nova", "amelia"] + speech_texts("computer", n_clips, seed)
    out = {}
    for b in available_backends():
        if engines and b.name not in engines:
            continue
        voices = b.voices()
        jobs = [(texts[i % len(texts)], voices[rng.randrange(len(voices))]) for i in range(n_clips)]
        b.synthesize("warm up", voices[0], Prosody())  # model loading is not throughput
        t, c = time.time(), time.process_time()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            clips = list(pool.map(lambda j, b=b: b.synthesize(j[0], j[1], Prosody()), jobs))
        wall = time.time() - t
        seconds = sum(len(x) for x in clips) / SAMPLE_RATE
        out[b.name] = {"clips": n_clips, "wall_s": round(wall, 2), "clips_per_s": round(n_clips / wall, 3),
                       "audio_s_per_s": round(seconds / wall, 2),
                       "main_process_cpu_s": round(time.process_time() - c, 2), "voices": len(voices)}
        print(f"{b.name}: {out[b.name]}", flush=True)
    return out


def cache_size(cache: Path) -> dict:
    """Bytes per hour of windowed audio in each training cache under ``cache`` (float16 (windows, 96, E))."""
    out = {}
    for d in sorted(cache.glob("train-*")):
        f = d / "embeddings.npy"
        if not f.exists():
            continue
        arr = np.load(f, mmap_mode="r")
        n, _, e = arr.shape
        window_s = (76 + 8 * (e - 1)) * 0.01 + 0.032  # the audio the E embeddings of a window cover
        hours = n * window_s / 3600
        out[d.name] = {"windows": int(n), "embeddings_per_window": int(e), "bytes": f.stat().st_size,
                       "hours_of_windows": round(hours, 3), "mb_per_hour": round(f.stat().st_size / 1e6 / hours, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engines", nargs="*", default=[], help="only these engines (default: every installed one)")
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/data_throughput.json"))
    a = ap.parse_args()
    report = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
              "workers": a.workers, "engines": engine_throughput(a.clips, a.workers, engines=tuple(a.engines))}
    if a.cache:
        report["cache"] = cache_size(a.cache)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2))
    print("| engine | voices | clips/s | audio s per s |\n|---|---|---|---|")
    for name, r in report["engines"].items():
        print(f"| {name} | {r['voices']} | {r['clips_per_s']:.2f} | {r['audio_s_per_s']:.1f} |")
    for name, r in report.get("cache", {}).items():
        print(f"cache {name}: {r['windows']} windows x {r['embeddings_per_window']} embeddings, "
              f"{r['bytes'] / 1e6:.1f} MB, {r['mb_per_hour']:.1f} MB per hour of windows")


if __name__ == "__main__":
    main()
