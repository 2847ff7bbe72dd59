"""Peak memory and step time of dual-teacher distillation at the default batch.

    python benchmarks/distill_memory.py [--w2v base] [--conformer base] [--batch 64] [--out docs]

Each measurement runs in a fresh process so peaks do not mix:
  * live: both teachers in memory, run under no_grad (bf16 autocast on GPU) on every batch, plus the
    student's forward/backward and AdamW step with the distillation loss (KD + feature matching);
  * cached: teachers dropped after their outputs were cached (the ``cache: true`` option), so a
    training step holds only the student, the adapters and a cached batch.
CPU: peak RSS (VmHWM) of the process, during set-up (loading teachers, filling the cache) and, after a
reset, during the training steps. GPU (when present): torch.cuda.max_memory_allocated, the same two ways.
Teacher checkpoints are made by ``fit`` itself (one step on a small synthetic-speech data set), because
distillation refuses teachers that never went through training; their weights do not change memory.
Writes <out>/distill_memory.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(mode: str, teachers: list[str], batch: int, steps: int, device: str) -> dict:
    import torch

    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel
    from wakeword.training.distill import DistillConfig, DistillLoss
    from wakeword.training.fit import Batch

    torch.set_num_threads(1)
    dev = torch.device(device)
    feat = FeatureConfig()
    student = WakeWordModel("mobilenetv3", {}, feat).to(dev).train()
    cfg = DistillConfig.from_dict({"teachers": teachers, "feature_weight": 0.5, "cache": mode == "cached"})
    term = DistillLoss(cfg, student.backbone.feature_dims, augment_draws=1).to(dev)
    n = batch
    audio = 0.1 * torch.randn(n, feat.window_samples)

    class _OneBatch:  # the dataset interface prepare() reads: one draw of `n` windows
        seed = 0

        def __init__(self):
            self.feat = feat

        def __len__(self):
            return n

        def set_epoch(self, e):
            pass

        def __getitem__(self, i):
            return audio[i], 0, torch.tensor([0, i])

    with tempfile.TemporaryDirectory() as tmp:
        term.prepare(_OneBatch(), dev, Path(tmp), progress=False)
    import gc

    gc.collect()
    setup_peak = _peak_rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the steps' peak is measured from here
    if dev.type == "cuda":
        setup_gpu = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.AdamW(list(student.parameters()) + list(term.parameters()), 1e-3)
    keys = torch.stack([torch.zeros(n, dtype=torch.long), torch.arange(n)], dim=1)
    labels = (torch.arange(n) % 2).float().to(dev)
    times = []
    for s in range(steps):
        t0 = time.perf_counter()
        x = audio.to(dev)
        inputs = student.frontend(x)
        logits, feats = student.backbone.forward_features(inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        extra, _ = term(Batch(x, labels, keys, inputs, logits, feats, s, steps))
        (loss + extra).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = {"mode": mode, "device": device, "batch": n, "cpu_peak_rss_mb_setup": round(setup_peak, 1),
           "cpu_peak_rss_mb_training_steps": round(_peak_rss_mb(), 1),
           "seconds_per_step": round(sorted(times)[len(times) // 2], 3)}
    if dev.type == "cuda":
        out["gpu_max_memory_allocated_mb_setup"] = round(setup_gpu, 1)
        out["gpu_max_memory_allocated_mb_training_steps"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _make_teachers(tmp: Path, w2v: str, conformer: str) -> list[str]:
    from wakeword.dataset.build import DataConfig, build
    from wakeword.training.distill import teacher_config
    from wakeword.training.fit import fit

    data = tmp / "data"
    build(DataConfig(phrase="computer", n_positive=12, n_adversarial=6, n_speech=6, n_noise=2, n_babble=1,
                     engines=("espeak-ng",)), data, progress=False)
    paths = []
    for kind, preset in (("wav2vec2", w2v), ("conformer", conformer)):
        run = tmp / kind
        fit(teacher_config(kind, {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "num_workers": 0,
                                  "model": {"preset": preset}}), data, run, progress=False)
        paths.append(str(run / "best.pt"))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--w2v", default="base", help="Wav2Vec2 preset (base = wav2vec2-base size, 95 M)")
    ap.add_argument("--conformer", default="base", help="Conformer preset")
    ap.add_argument("--batch", type=int, default=64, help="default TrainConfig.batch_size")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--_child", nargs=3, metavar=("MODE", "DEVICE", "TEACHERS_JSON"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        mode, device, teachers = a._child
        print(json.dumps(_measure(mode, json.loads(teachers), a.batch, a.steps, device)))
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        teachers = _make_teachers(Path(tmp), a.w2v, a.conformer)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        results = []
        for device in devices:
            for mode in ("live", "cached"):
                cmd = [sys.executable, __file__, "--batch", str(a.batch), "--steps", str(a.steps),
                       "--_child", mode, device, json.dumps(teachers)]
                r = subprocess.run(cmd, capture_output=True, text=True, check=True)
                results.append(json.loads(r.stdout.strip().splitlines()[-1]))
                print(results[-1], flush=True)
    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel

    sizes = {k: sum(p.numel() for p in WakeWordModel(k, {"preset": p}, FeatureConfig()).parameters())
             for k, p in (("wav2vec2", a.w2v), ("conformer", a.conformer))}
    report = {"command": "python benchmarks/distill_memory.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "torch": torch.__version__, "teacher_presets": {"wav2vec2": a.w2v, "conformer": a.conformer},
              "teacher_params": sizes, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "results": results}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "distill_memory.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
