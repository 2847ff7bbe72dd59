"""Speed and memory benchmarks; writes docs/benchmarks.json and the generated part of docs/BENCHMARKS.md.

    python benchmarks/run_benchmarks.py [--model runs/x/best.pt] [--out docs]

Measures: TTS clips/s per engine; training clips/s (CPU, and GPU when present); inference latency per
1 s window at batch 1 on one thread (torch and ONNX Runtime); streaming real-time factor; peak
memory (RSS) of a streaming detector and of a training step. Never run inside the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wakeword.audio.tts import Prosody, available_backends
from wakeword.export import OnnxDetector, export_onnx
from wakeword.features.logmel import FeatureConfig
from wakeword.inference import Detector
from wakeword.models import count_macs, count_params
from wakeword.models.kws import WakeWordModel
from wakeword.training.checkpoint import load_model


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_tts(n: int = 12) -> dict:
    out = {}
    for b in available_backends():
        voices = b.voices()
        b.synthesize("warm up", voices[0], Prosody())  # loads models (piper)
        t = time.perf_counter()
        for i in range(n):
            b.synthesize("computer", voices[i % len(voices)], Prosody(rate=1.0 + 0.02 * i))
        out[b.name] = round(n / (time.perf_counter() - t), 2)
    return out


def bench_train(device: str, steps: int = 20, batch: int = 64) -> float:
    torch.manual_seed(0)
    feat = FeatureConfig()
    m = WakeWordModel("mobilenetv3", {}, feat).to(device)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    x = (torch.randn(batch, feat.window_samples) * 0.1).to(device)
    y = (torch.rand(batch) > 0.5).float().to(device)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        with torch.no_grad():
            mel = m.frontend(x)
        loss = loss_fn(m.backbone(mel), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return round(steps * batch / (time.perf_counter() - t), 1)


def median_ms(fn, reps: int = 200, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="checkpoint to measure (default: a freshly initialised default student)")
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(a.model) if a.model else WakeWordModel("mobilenetv3", {}, FeatureConfig()).eval()
    feat = model.feat
    res: dict = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                             "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                             "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "command": "python benchmarks/run_benchmarks.py" + (f" --model {a.model}" if a.model else "")}
    example = torch.zeros(1, feat.n_mels, feat.window_frames)
    res["student"] = {"params": count_params(model.backbone), "macs_per_window": count_macs(model.backbone, example),
                      "windows_per_s": 1 / feat.score_hop_s}
    res["student"]["macs_per_audio_s"] = int(res["student"]["macs_per_window"] / feat.score_hop_s)
    res["tts_clips_per_s"] = bench_tts()
    res["train_windows_per_s"] = {"cpu_1_thread": bench_train("cpu")}
    if torch.cuda.is_available():
        res["train_windows_per_s"]["cuda"] = bench_train("cuda", steps=50, batch=256)

    window = torch.from_numpy(np.random.default_rng(0).standard_normal(feat.window_samples).astype(np.float32) * 0.1)
    with torch.no_grad():
        res["latency_ms_per_1s_window_batch1_1thread"] = {"torch": median_ms(lambda: model(window[None]))}
    with tempfile.TemporaryDirectory() as d:
        path = export_onnx(model, Path(d) / "m.onnx")
        res["onnx_kib"] = round(path.stat().st_size / 1024, 1)
        onnx_det = OnnxDetector(path, threads=1)
        w = window.numpy()[None]
        res["latency_ms_per_1s_window_batch1_1thread"]["onnxruntime"] = median_ms(lambda: onnx_det.score_windows(w))

        # Streaming graph (one hop + caches per call), onnxruntime only, 1 thread.
        from wakeword.export import OnnxStreamer, export_streaming_onnx

        sp = export_streaming_onnx(model, Path(d) / "s.onnx")
        res["onnx_streaming_kib"] = round(sp.stat().st_size / 1024, 1)
        streamer = OnnxStreamer(sp, threads=1)
        sig = np.random.default_rng(2).standard_normal(feat.sample_rate * 60).astype(np.float32) * 0.05
        t = time.perf_counter()
        for i in range(0, len(sig), 1600):
            streamer.feed(sig[i:i + 1600])
        el = time.perf_counter() - t
        res["onnx_streaming"] = {"audio_s": 60, "real_time_factor": round(el / 60, 5),
                                 "cpu_s_per_audio_hour": round(el * 60, 1),
                                 "ms_per_hop": round(1000 * el / (len(sig) // streamer.c["chunk"]), 3),
                                 "hop_ms": 1000 * streamer.c["chunk"] / feat.sample_rate}
    audio = np.random.default_rng(1).standard_normal(feat.sample_rate * 60).astype(np.float32) * 0.05
    det = Detector(model)
    stream = det.stream()
    chunk = int(0.08 * feat.sample_rate)
    t = time.perf_counter()
    for i in range(0, len(audio), chunk):
        stream.feed(audio[i:i + chunk])
    el = time.perf_counter() - t
    res["streaming"] = {"audio_s": 60, "chunk_ms": 80, "real_time_factor": round(el / 60, 5),
                        "cpu_s_per_audio_hour": round(el * 60, 1)}
    t = time.perf_counter()
    det.score_track(audio)
    res["offline_score_track_rtf"] = round((time.perf_counter() - t) / 60, 5)
    res["peak_rss_mb_after_inference"] = round(peak_rss_mb(), 1)
    # Peak memory of training, measured in a fresh process so inference buffers do not count.
    code = ("import torch; torch.set_num_threads(1); import benchmarks.run_benchmarks as b; "
            "b.bench_train('cpu', steps=5); print(b.peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    res["peak_rss_mb_training_batch64"] = float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "benchmarks.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
