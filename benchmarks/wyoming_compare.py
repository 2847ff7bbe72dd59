"""Compare Home Assistant's openWakeWord server (``benchmarks/wyoming_check.py``'s JSON) with our own scores.

    python benchmarks/wyoming_compare.py --model runs/computer/best.pt --check docs/wyoming_check.json

wyoming-openwakeword 1.8.2 starts every connection from empty buffers and cuts 1760-sample mel windows every
1280 samples from the first one, so its embeddings lie on a track's grid and its probability i is our window i
(``Detector.score_track``). Prints, per clip and overall, the largest |server - ours| and whether the server
and our model, at the same threshold, agree on detecting the clip; adds a ``comparison`` section to the JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    from wakeword.audio.io import load_audio
    from wakeword.inference import Detector

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the checkpoint the .tflite was exported from")
    ap.add_argument("--check", required=True, help="wyoming_check.py's JSON")
    a = ap.parse_args()
    report = json.loads(Path(a.check).read_text())
    det, thr = Detector.load(a.model), report["threshold"]
    rows = []
    for c in report["clips"]:
        pcm = (np.clip(load_audio(c["clip"]), -1, 1) * 32767).astype(np.int16)
        ours, _ = det.score_track(pcm.astype(np.float32) / 32767)
        theirs = np.array(c["probabilities"])
        n = min(len(ours), len(theirs))
        rows.append({"clip": c["clip"], "scores": n,  # 0: a clip shorter than one window (nothing to compare)
                     "max_abs_diff": float(np.abs(theirs[:n] - ours[:n]).max()) if n else None,
                     "server_detected": any(e["type"] == "detection" for e in c["events"]),
                     "ours_detected": bool(ours.max() >= thr)})
    d = np.array([r["max_abs_diff"] for r in rows if r["scores"]])
    report["comparison"] = {
        "model": a.model, "clips": len(rows), "clips_compared": len(d), "max_abs_diff": float(d.max()), "median_per_clip_max": float(np.median(d)),
        "same_decision": int(sum(r["server_detected"] == r["ours_detected"] for r in rows)),
        "server_detections": int(sum(r["server_detected"] for r in rows)),
        "our_detections": int(sum(r["ours_detected"] for r in rows)),
        "command": f"python benchmarks/wyoming_compare.py --model {a.model} --check {a.check}", "per_clip": rows}
    Path(a.check).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report["comparison"].items() if k != "per_clip"}, indent=2))


if __name__ == "__main__":
    main()
