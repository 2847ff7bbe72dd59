"""End-to-end over the Wyoming protocol: Home Assistant's openWakeWord server runs our exported head (issue #19).

wyoming-openwakeword 1.8.2 (the server of Home Assistant's openWakeWord add-on) needs tflite-runtime, whose
wheels are built against numpy 1, so this runs in its own small virtual environment:

    python -m venv /work/venv19w
    /work/venv19w/bin/pip install wyoming-openwakeword==1.8.2 "numpy<2" soundfile
    /work/venv19w/bin/python benchmarks/wyoming_check.py --model computer.tflite --threshold 0.9 \\
        --out docs/wyoming_check.json CLIP.flac ...

Starts the server on 127.0.0.1 with the model's folder as ``--custom-model-dir``, and for each clip opens a
client connection as a satellite does: ``Detect`` (the model's name), ``AudioStart``, the clip in 80 ms
``AudioChunk``s (16 kHz, 16-bit mono), ``AudioStop``; it records the ``Detection`` / ``NotDetected`` events
and the server's own per-call probabilities (``--debug-probability --output-dir``). No project code is
imported: the JSON it writes is compared with our scores by ``benchmarks/wyoming_compare.py``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 1280  # samples per AudioChunk (80 ms), as Home Assistant's satellites send


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_clip(port: int, name: str, pcm: np.ndarray) -> list[dict]:
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.wake import Detect, Detection, NotDetected

    events = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Detect(names=[name]).event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for i in range(0, len(pcm), CHUNK):
            await client.write_event(AudioChunk(rate=16000, width=2, channels=1,
                                                audio=pcm[i:i + CHUNK].tobytes()).event())
        await asyncio.sleep(0.5)  # the server scores in its own threads: let it catch up before the stop
        await client.write_event(AudioStop().event())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                event = await asyncio.wait_for(client.read_event(), timeout=deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if event is None:
                break
            if Detection.is_type(event.type):
                events.append({"type": "detection", "timestamp_ms": Detection.from_event(event).timestamp})
            elif NotDetected.is_type(event.type):
                events.append({"type": "not-detected"})
                break
    return events


def main() -> None:
    import soundfile as sf

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--model", required=True, help="NAME.tflite (wakeword export --format openwakeword)")
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    models, logs = tmp / "models", tmp / "out"
    models.mkdir()
    shutil.copy(a.model, models / Path(a.model).name)
    name = Path(a.model).stem
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "wyoming_openwakeword", "--uri", f"tcp://127.0.0.1:{port}",
                               "--custom-model-dir", str(models), "--threshold", str(a.threshold),
                               "--output-dir", str(logs), "--debug-probability"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        results = []
        for clip in a.clips:
            audio, sr = sf.read(clip, dtype="int16")
            if sr != 16000 or audio.ndim != 1:
                raise SystemExit(f"{clip}: give 16 kHz mono clips")
            before = set(logs.glob("*.txt")) if logs.exists() else set()
            events = asyncio.run(run_clip(port, name, audio))
            new = sorted(set(logs.glob("*.txt")) - before)
            rows = [line.split() for f in new for line in f.read_text().splitlines()]
            probs = [float(r[2]) for r in rows if len(r) == 3 and r[1] == name and r[2] != "detected"]
            results.append({"clip": str(clip), "events": events, "probabilities": probs})
    finally:
        server.terminate()
        server.wait(timeout=10)
    import wyoming_openwakeword

    report = {"server": f"wyoming-openwakeword {getattr(wyoming_openwakeword, '__version__', '1.8.2')}",
              "model": str(a.model), "threshold": a.threshold, "clips": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{sum(any(e['type'] == 'detection' for e in r['events']) for r in results)} of {len(results)} clips "
          f"detected; report {a.out}")


if __name__ == "__main__":
    main()
