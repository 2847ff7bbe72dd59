"""How closely openWakeWord 0.5.1, running our exported head, reproduces our own scores on real audio (issue #19).

    python benchmarks/oww_agreement.py --out docs                       # a seeded random head
    python benchmarks/oww_agreement.py --model runs/computer/best.pt --out docs

Exports the checkpoint with ``export_openwakeword`` (without --model: a speech-embedding model with a seeded
random head whose classifier is scaled x4 so its scores spread), plays each clip through openWakeWord's own
``Model.predict`` in 80 ms calls, and compares every score made of real embeddings with our score of the same
audio (``Detector.score_track``, shifted by ``OWW_FRAME_OFFSET``). Per set of clips, as they are and with 1 s
of digital silence before and after (the `wakeword bench` protocol for positives): the largest and the median
per-clip maximum |probability difference|, and the share of clips whose maximum stays under 1e-4.
Writes ``<out>/oww_agreement.json`` and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
SETS = {  # name -> glob under the real development folder
    "precise_community computer": "precise_community/computer/en/*.flac",
    "precise_community amelia": "precise_community/amelia/*/*.flac",
    "precise_community not-wake-words": "precise_community/not-wake-words/en/*.flac",
    "pocketsphinx_testdata": "debian/pocketsphinx_testdata/*.flac",
    "ljspeech_coqui": "ljspeech_coqui/wavs/*.flac",
    "asterisk_en_allison (8 kHz)": "debian/asterisk_en_allison/*.flac",
}
CHUNK, FIRST_REAL_CALL = 1280, 9  # see tests/test_oww_export.py


def main() -> None:
    import torch
    from openwakeword.model import Model

    from wakeword.audio.io import load_audio
    from wakeword.features.logmel import FeatureConfig
    from wakeword.inference import Detector
    from wakeword.models.kws import WakeWordModel
    from wakeword.oww_export import OWW_FRAME_OFFSET, export_openwakeword, head_context
    from wakeword.training.checkpoint import load_model, save_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="speech_embedding checkpoint (default: a seeded random head)")
    ap.add_argument("--per-set", type=int, default=30, help="clips per set (the first N by name)")
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    if a.model:
        ckpt, model = Path(a.model), load_model(a.model)
    else:
        torch.manual_seed(0)
        model = WakeWordModel("speech_embedding", {"hidden": 16}, FeatureConfig()).eval()
        with torch.no_grad():
            model.backbone.classifier.weight.mul_(4.0)
        ckpt = tmp / "random_head.pt"
        save_checkpoint(ckpt, model, {"train": {}})
    path = Path(export_openwakeword(ckpt, tmp / "head.onnx")["path"])
    det, first = Detector(model), FIRST_REAL_CALL + head_context(model) - 1

    def max_diff(audio: np.ndarray) -> float:
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        np.random.seed(0)
        oww = Model(wakeword_models=[str(path)], inference_framework="onnx")
        s = np.array([oww.predict(pcm[i:i + CHUNK])["head"] for i in range(0, len(pcm) - CHUNK + 1, CHUNK)])
        ours, _ = det.score_track(pcm.astype(np.float32)[OWW_FRAME_OFFSET * 160:] / 32767)
        n = min(len(s) - first, len(ours))
        return float(np.abs(s[first:first + n] - ours[:n]).max()) if n > 0 else float("nan")

    rows = {}
    for name, pattern in SETS.items():
        files = sorted(REAL.glob(pattern))[: a.per_set]
        if not files:
            continue
        for pad in (0.0, 1.0):
            z = np.zeros(int(pad * 16000), np.float32)
            d = np.array([max_diff(np.concatenate([z, load_audio(f), z])) for f in files])
            d = d[~np.isnan(d)]
            rows[f"{name}, {'padded 1 s silence' if pad else 'as recorded'}"] = {
                "clips": len(d), "max": float(d.max()), "median": float(np.median(d)),
                "share_under_1e-4": float((d < 1e-4).mean())}
    report = {"model": str(a.model or "seeded random head (hidden 16, classifier x4)"), "sets": rows,
              "command": "python benchmarks/oww_agreement.py " + (f"--model {a.model} " if a.model else "")
              + f"--out {a.out}"}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "oww_agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| clips | n | max abs diff | median of per-clip max | clips under 1e-4 |\n|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['clips']} | {r['max']:.2g} | {r['median']:.2g} | {100 * r['share_under_1e-4']:.0f} % |")


if __name__ == "__main__":
    main()
