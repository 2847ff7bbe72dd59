"""Size and cost of the detector on a device, float vs INT8, next to openWakeWord (issue #7).

    python benchmarks/edge.py --model work/demo/run/best.pt --out docs

Exports the checkpoint (window and streaming graphs, float and static INT8) into a temporary folder
and measures, on one CPU thread: parameters, multiply-accumulates per second of audio, file sizes,
latency per hop (median over a real stream), real-time factor and CPU seconds per audio hour of the
streaming graph, peak RSS of a fresh process that runs only onnxruntime and the streaming file, and
the same CPU cost and peak RSS for openWakeWord 0.5.1's pretrained models on the same audio.
Writes ``<out>/edge_benchmarks.json`` and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"

# A process that holds only what a device needs: onnxruntime, numpy and the streaming file.
_STREAM_PROC = r"""
import sys, json, numpy as np, onnxruntime as ort
def hwm():  # this process's own peak (ru_maxrss would include the forking parent's)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
path, wav = sys.argv[1], sys.argv[2]
audio = np.load(wav, mmap_mode="r")  # read hop by hop, as a microphone would deliver it
base = hwm()
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
c = json.loads(s.get_modelmeta().custom_metadata_map["stream"])
samples = np.array(audio[None, :c["sample_cache"]])
caches = {k: np.zeros(v, np.float32) for k, v in (c.get("caches") or {"feature_cache": [1, c["n_mels"], c["feature_cache_frames"]]}).items()}
n = c["chunk"]
for i in range(c["sample_cache"], len(audio) - n + 1, n):
    _, samples, *new = s.run(None, {"audio": np.array(audio[None, i:i + n]), "sample_cache": samples, **caches})
    caches = dict(zip(caches, new))
print(json.dumps({"peak_rss_mb": hwm(), "import_rss_mb": base}))
"""

_OWW_PROC = r"""
import sys, json, numpy as np
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
name, wav = sys.argv[1], sys.argv[2]
audio = np.load(wav, mmap_mode="r")
base = hwm()
from openwakeword.model import Model
m = Model(wakeword_models=[name], inference_framework="onnx")
for i in range(0, len(audio) - 1279, 1280):  # 80 ms chunks of 16 kHz int16, its native input
    m.predict((np.clip(audio[i:i + 1280], -1, 1) * 32767).astype(np.int16))
print(json.dumps({"peak_rss_mb": hwm(), "import_rss_mb": base}))
"""


def real_stream(seconds: float) -> tuple[np.ndarray, str]:
    """Real speech and noise from the development set (or espeak-ng speech when it is absent)."""
    from wakeword.audio.io import load_audio

    files = sorted((REAL / "ljspeech_coqui").rglob("*.flac")) + sorted((REAL / "sc_background_noise").glob("*.flac"))
    if files:
        parts, total = [], 0
        for f in files:
            a = load_audio(f)
            parts.append(a)
            total += len(a)
            if total >= seconds * 16000:
                break
        return np.concatenate(parts)[: int(seconds * 16000)].astype(np.float32), "LJSpeech sentences + background noise (real)"
    from wakeword.audio.tts import EspeakBackend, Prosody

    b = EspeakBackend()
    a = b.synthesize("this is a sentence about the weather in the kitchen " * 20, b.voices()[0], Prosody())
    return np.tile(a, int(np.ceil(seconds * 16000 / len(a))))[: int(seconds * 16000)].astype(np.float32), "espeak-ng speech"


def hop_latencies(path: str, audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-call wall time (ms) of the streaming graph over ``audio``, and CPU seconds per audio hour."""
    from wakeword.export import OnnxStreamer

    st = OnnxStreamer(path, threads=1)
    c = st.c
    samples = audio[None, : c["sample_cache"]]
    caches = st.initial_caches()
    n = c["chunk"]
    times = []
    cpu0 = time.process_time()
    for i in range(c["sample_cache"], len(audio) - n + 1, n):
        t = time.perf_counter()
        _, samples, *new = st.session.run(None, {"audio": audio[None, i:i + n], "sample_cache": samples, **caches})
        caches = dict(zip(caches, new))
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    return np.array(times) * 1000, cpu / (len(audio) / 16000) * 3600


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="work/demo/run/best.pt")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--seconds", type=float, default=300.0, help="audio streamed for the cost figures")
    ap.add_argument("--oww", nargs="*", default=["hey_jarvis", "alexa", "hey_mycroft", "weather", "timer", "hey_rhasspy"])
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from wakeword.evaluation.detectors import OpenWakeWordDetector
    from wakeword.export import (
        calibration_windows,
        export_onnx,
        export_streaming_onnx,
        model_stream_contract,
        quantize_int8,
        streaming_calibration_feeds,
    )
    from wakeword.models.registry import count_macs
    from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(a.model)
    model = model_from_checkpoint(ckpt)
    data_dir = ckpt.get("config", {}).get("data_dir")
    audio, audio_desc = real_stream(a.seconds)
    res: dict = {"model": a.model, "machine": platform.processor() or platform.machine(),
                 "cpu_count": os.cpu_count(), "audio": audio_desc, "audio_s": len(audio) / 16000}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        files = {"window_float": export_onnx(model, t / "m.onnx"),
                 "stream_float": export_streaming_onnx(model, t / "m.stream.onnx")}
        cal = calibration_windows(data_dir, model.feat)
        files["window_int8"] = quantize_int8(files["window_float"], t / "m.int8.onnx", cal)
        files["stream_int8"] = quantize_int8(files["stream_float"], t / "m.stream.int8.onnx",
                                             streaming_calibration_feeds(files["stream_float"], cal))
        c = model_stream_contract(model)
        with torch.no_grad():
            macs = count_macs(model.backbone, model.frontend(torch.zeros(1, model.feat.window_samples)))
            # per streaming call: the whole network on a window (log-mel students), or one new embedding
            # and the head (speech_embedding: the other two embeddings come from its cache)
            macs_hop = macs if model.input_kind == "mel" else count_macs(*model.backbone.stream_step()[::2])
        params = sum(p.numel() for p in model.backbone.parameters())
        res["parameters"] = params
        res["stream_hop_s"] = c["chunk"] / 16000
        res["file_kib"] = {k: round(p.stat().st_size / 1024, 1) for k, p in files.items()}
        wav = t / "audio.npy"
        np.save(wav, audio)
        for k in ("stream_float", "stream_int8"):
            lat, cpu_h = hop_latencies(str(files[k]), audio)
            proc = subprocess.run([sys.executable, "-c", _STREAM_PROC, str(files[k]), str(wav)],
                                  capture_output=True, text=True, check=True)
            res[k] = {"hop_ms_median": float(np.median(lat)), "hop_ms_p99": float(np.percentile(lat, 99)),
                      "rtf": float(np.median(lat)) / 1000 / res["stream_hop_s"], "cpu_s_per_audio_hour": cpu_h,
                      **json.loads(proc.stdout)}
        res["macs_per_window"] = int(macs)
        res["macs_per_hop"] = int(macs_hop)
        res["macs_per_audio_second"] = int(macs_hop / res["stream_hop_s"])
    res["openwakeword"] = {}
    for name in a.oww:
        det = OpenWakeWordDetector(name, name)
        det.reset()
        t0 = time.process_time()
        det.process(audio)
        cpu_h = (time.process_time() - t0) / (len(audio) / 16000) * 3600
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "audio.npy"
            np.save(wav, audio)
            proc = subprocess.run([sys.executable, "-c", _OWW_PROC, name, str(wav)], capture_output=True,
                                  text=True, check=True)
        res["openwakeword"][name] = {"cpu_s_per_audio_hour": cpu_h, **json.loads(proc.stdout)}
    if res["openwakeword"]:
        cheapest = min(v["cpu_s_per_audio_hour"] for v in res["openwakeword"].values())
        res["ratio_stream_float_to_cheapest_oww"] = res["stream_float"]["cpu_s_per_audio_hour"] / cheapest
        res["ratio_stream_int8_to_cheapest_oww"] = res["stream_int8"]["cpu_s_per_audio_hour"] / cheapest
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "edge_benchmarks.json").write_text(json.dumps(res, indent=2))
    print(markdown(res))


def markdown(r: dict) -> str:
    f, q = r["stream_float"], r["stream_int8"]
    lines = ["| what | float | INT8 |", "|---|---|---|",
             f"| parameters | {r['parameters']:,} | same |",
             (f"| network multiply-accumulates (front end not counted) per window / per streaming call / per second "
             f"of audio (one call per {r['stream_hop_s'] * 1000:.0f} ms hop) "
             f"| {r['macs_per_window'] / 1e6:.2f} M / {r.get('macs_per_hop', r['macs_per_window']) / 1e6:.2f} M / "
             f"{r['macs_per_audio_second'] / 1e6:.1f} M | same |"),
             f"| file, window graph (KiB) | {r['file_kib']['window_float']} | {r['file_kib']['window_int8']} |",
             f"| file, streaming graph (KiB) | {r['file_kib']['stream_float']} | {r['file_kib']['stream_int8']} |",
             (f"| latency per hop, median / p99 (ms, 1 thread) | {f['hop_ms_median']:.3f} / {f['hop_ms_p99']:.3f} "
             f"| {q['hop_ms_median']:.3f} / {q['hop_ms_p99']:.3f} |"),
             f"| real-time factor (median hop / hop length) | {f['rtf']:.4f} | {q['rtf']:.4f} |",
             f"| CPU seconds per audio hour (streaming, 1 thread) | {f['cpu_s_per_audio_hour']:.1f} | {q['cpu_s_per_audio_hour']:.1f} |",
             (f"| peak RSS of a process running only onnxruntime + the streaming file, audio memory-mapped (MB; "
             f"before loading the model: {f['import_rss_mb']:.0f}) | {f['peak_rss_mb']:.0f} | {q['peak_rss_mb']:.0f} |")]
    if r.get("openwakeword"):
        lines += ["", ("| openWakeWord 0.5.1 model (onnx, 80 ms chunks, 1 thread) | CPU s per audio hour | peak RSS (MB) "
                      "| RSS before loading the model (MB) |"), "|---|---|---|---|"]
        for k, v in r["openwakeword"].items():
            lines.append(f"| {k} | {v['cpu_s_per_audio_hour']:.1f} | {v['peak_rss_mb']:.0f} | {v['import_rss_mb']:.0f} |")
        lines += ["", (f"Our streaming cost / the cheapest openWakeWord model's: float "
                      f"{r['ratio_stream_float_to_cheapest_oww']:.3f}, INT8 {r['ratio_stream_int8_to_cheapest_oww']:.3f} "
                      f"(target <= 0.2). Audio: {r['audio']}, {r['audio_s']:.0f} s.")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
