"""ESPHome / microWakeWord export: a MixedNet checkpoint -> int8 streaming .tflite + the manifest ESPHome reads.

What ESPHome's ``micro_wake_word`` component (and pymicro-wakeword, its desktop twin) expects, and what this writes:

- ``NAME.tflite``: one call per 3 feature frames (30 ms): input (1, 3, 40) int8 with scale 26/255 and zero point
  -128 (ESPHome converts its front end's uint16 output to int8 with that fixed mapping), output (1, 1) uint8 (the
  probability x 256), the streaming state in TF resource variables (one ring buffer per MixConv block) that
  persist between calls. Built by TensorFlow's converter in its own environment (``mww_tflite.py``, run with
  .venv-tflite's Python: scripts/setup_tflite.sh), calibrated on consecutive calls over real clips.
- ``NAME.json``: the version-2 manifest (the schema of the models pymicro-wakeword bundles): ``type: micro``,
  ``wake_word``, ``author``, ``website``, ``model``, ``trained_languages``, ``version: 2`` and ``micro``:
  ``probability_cutoff`` (the checkpoint's calibrated threshold), ``sliding_window_size``, ``feature_step_size``
  (10 ms), ``tensor_arena_size`` (TFLite Micro's measured arena + 15 %), ``minimum_esphome_version``.

The export checks itself: the float TF graph against the torch model (the weight transfer) and the int8 file,
loaded by pymicro-wakeword's own ``MicroWakeWord.from_config`` from the manifest, against the torch model on
real clips; both go into the returned report (``export_report.json``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wakeword.features.micro import MICRO_MAX, micro_features
from wakeword.models.base import fold_batchnorm
from wakeword.models.kws import WakeWordModel
from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint

logger = logging.getLogger(__name__)

FEATURE_STEP_MS = 10  # the front end's frame step, the manifest's feature_step_size
MIN_ESPHOME = "2024.7.0"  # the first ESPHome release that reads version-2 manifests (as the bundled models say)
ARENA_MARGIN = 1.15  # manifest arena = measured x this: the x86-64 measurement plus headroom (the bundled
#                      models' manifests hold 9-43 % more than TFLite Micro measures for them: docs/BENCHMARKS.md)
ARENA_ESTIMATE = 37000  # without tflite-micro: the largest bundled manifest's arena (okay_nabu, 80 KB model)
# The ops ESPHome's micro_wake_word registers for streaming models (its op resolver); anything else fails to load.
ESPHOME_OPS = frozenset({"CALL_ONCE", "VAR_HANDLE", "RESHAPE", "READ_VARIABLE", "STRIDED_SLICE", "CONCATENATION",
                         "ASSIGN_VARIABLE", "CONV_2D", "MUL", "ADD", "MEAN", "FULLY_CONNECTED", "LOGISTIC", "QUANTIZE",
                         "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "PACK", "SPLIT_V"})
ESPHOME_MAX_VARIABLES = 20  # MicroResourceVariables slots ESPHome creates per model
DEFAULT_WEBSITE = "https://esphome.io/components/micro_wake_word/"  # a placeholder: put the model's own page
CALIB_CLIPS = 48  # clips whose features calibrate the int8 ranges (consecutive calls, state carried)
CHECK_CLIPS = 12  # clips on which the int8 file is compared with the torch model


class ExportError(RuntimeError):
    pass


def tflite_python() -> str:
    """The Python of the converter's environment: $WAKEWORD_TFLITE_PYTHON, else .venv-tflite next to the
    source tree (scripts/setup_tflite.sh), else this interpreter if it has TensorFlow."""
    env = os.environ.get("WAKEWORD_TFLITE_PYTHON")
    if env:
        return env
    root = Path(__file__).resolve().parents[2]
    venv = Path(os.environ.get("WAKEWORD_TFLITE_VENV", root / ".venv-tflite"))
    if not venv.is_absolute():
        venv = root / venv
    py = venv / "bin" / "python"
    if py.is_file():
        return str(py)
    try:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is not None:
            return sys.executable
    except (ImportError, ValueError):
        pass
    raise ExportError(f"the microWakeWord export needs TensorFlow's converter: run scripts/setup_tflite.sh (creates "
                      f"{venv}) or set WAKEWORD_TFLITE_PYTHON to a Python with tensorflow-cpu")


def folded_weights(model: WakeWordModel) -> tuple[dict, dict[str, np.ndarray]]:
    """A MixedNet in eval mode as (spec, arrays in TF's NHWC filter layouts), every BatchNorm folded in."""
    net = model.backbone
    cfg = net.cfg
    with torch.no_grad():
        bn = net.input_norm  # per band, before a convolution without padding: exact to fold
        s_in = net.input_norm.weight / torch.sqrt(bn.running_var + bn.eps)
        t_in = bn.bias - bn.running_mean * s_in
        w = net.first.weight  # (C0, n_mels, stride)
        w_in = w * s_in[None, :, None]
        b_in = (w * t_in[None, :, None]).sum(dim=(1, 2))
        w0, b0 = fold_batchnorm(w_in, b_in, net.first_bn)
        arrays = {"first_w": w0.permute(2, 1, 0)[:, None].numpy(), "first_b": b0.numpy()}  # (k, 1, cin, cout)
        blocks = []
        for i, blk in enumerate(net.blocks):
            dw = blk.mix.weight()  # (C, 1, kmax), masked
            arrays[f"dw{i}"] = dw[:, 0].T[:, None, :, None].numpy()  # (kmax, 1, C, 1)
            pw, pb = fold_batchnorm(blk.pointwise.weight[:, :, 0], None, blk.bn)  # (cout, cin)
            arrays[f"pw{i}_w"] = pw.T[None, None].numpy()  # (1, 1, cin, cout)
            arrays[f"pw{i}_b"] = pb.numpy()
            blocks.append({"kmax": blk.mix.kmax, "cin": blk.pointwise.in_channels, "residual": blk.residual})
        arrays["head_w"] = net.classifier.weight.T.numpy()  # (C, 1)
        arrays["head_b"] = net.classifier.bias.numpy()
    spec = {"stride": cfg.stride, "n_mels": cfg.n_mels, "blocks": blocks, "window_steps": cfg.window_steps}
    return spec, {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}


def _clips(data_dir: Path, n: int, seed: int, split: str | None = None) -> list[np.ndarray]:
    """``n`` clips of a data folder (half wake words where it has them), each with 0.5 s of silence around it."""
    from wakeword.dataset.manifest import read_manifest
    from wakeword.dataset.torch_data import load_clips

    rows = sorted(read_manifest(data_dir), key=lambda r: r.clip_id)
    if split:
        rows = [r for r in rows if r.split == split] or rows
    if not rows:
        raise ExportError(f"no clips in {data_dir} to calibrate the int8 model with")
    rng = np.random.default_rng(seed)
    pos = [r for r in rows if r.label == 1]
    neg = [r for r in rows if r.label == 0]
    pick = []
    for group, k in ((pos, n // 2), (neg, n - n // 2)):
        if group:
            pick += [group[i] for i in rng.choice(len(group), min(k, len(group)), replace=False)]
    pad = np.zeros(8000, np.float32)
    return [np.concatenate([pad, c, pad]) for c in load_clips(pick, data_dir)]


def torch_stream_scores(model: WakeWordModel, feats: np.ndarray) -> np.ndarray:
    """What the streaming model gives on feats (40, frames) once its buffers hold real history: the window
    model's probability for every window, window k ending at frame stride * k + window_frames - 1."""
    with torch.no_grad():
        return torch.sigmoid(model.backbone.track_logits(torch.from_numpy(feats)[None]))[0].numpy()


def pymicro_scores(manifest: Path, feats: np.ndarray) -> np.ndarray:
    """The exported model loaded by pymicro-wakeword's own loader (from the manifest), fed feats (40, frames)
    frame by frame as its streaming API takes them; one probability per call (stride frames)."""
    from pymicro_wakeword import MicroWakeWord

    mww = MicroWakeWord.from_config(manifest)
    out = []
    try:
        for i in range(feats.shape[1]):
            p = mww.process_streaming_prob(feats[:, i].reshape(1, 1, -1))
            if (i + 1) % mww.stride == 0:
                out.append(p)
    finally:
        mww.close()
    return np.array(out, np.float32)


def model_name(text: str) -> str:
    """The file name a phrase's model gets (ESPHome and openWakeWord name a model by its file): "hey nova" -> hey_nova."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "wake_word"


def export_microwakeword(checkpoint: str | Path, out_dir: str | Path, *, wake_word: str | None = None,
                         data_dir: str | Path | None = None, author: str = "wakeword",
                         website: str = DEFAULT_WEBSITE, trained_languages: tuple[str, ...] = ("en",),
                         sliding_window_size: int = 1, probability_cutoff: float | None = None,
                         calib_clips: int = CALIB_CLIPS, check_clips: int = CHECK_CLIPS) -> dict:
    """Write ``out_dir/NAME.tflite`` and ``out_dir/NAME.json`` (+ export_report.json); returns the report.

    data_dir: clips for int8 calibration and the agreement check (default: the checkpoint's training data).
    sliding_window_size: probabilities ESPHome averages before comparing with the cutoff; 1 (default) makes the
    cutoff mean what the checkpoint's calibrated threshold means (one window's score).
    """
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    if model.arch != "mixednet" or model.feat.frontend != "micro":
        raise ExportError(f"--format microwakeword needs a mixednet checkpoint on the micro front end "
                          f"(configs/demo_micro.yaml), not {model.arch} on {model.feat.frontend}")
    cfg = ckpt.get("config", {})
    data = Path(data_dir or cfg.get("data_dir", ""))
    if not data_dir and not (data / "manifest.csv").is_file():
        raise ExportError(f"the training data {data} is not here: pass --data DIR (clips to calibrate int8 with)")
    if wake_word is None:
        dc = data / "data_config.json"
        wake_word = json.loads(dc.read_text()).get("phrase") if dc.is_file() else None
        if not wake_word:
            raise ExportError("no wake-word phrase in the data folder's data_config.json: pass --wake-word")
    cutoff = probability_cutoff if probability_cutoff is not None else ckpt.get("threshold")
    if cutoff is None or not math.isfinite(float(cutoff)):
        raise ExportError("the checkpoint has no calibrated threshold: pass --probability-cutoff")
    cutoff = float(min(max(float(cutoff), 0.0), 1.0))
    if len(model.backbone.blocks) > ESPHOME_MAX_VARIABLES:
        raise ExportError(f"{len(model.backbone.blocks)} streaming buffers; ESPHome holds {ESPHOME_MAX_VARIABLES}")

    spec, arrays = folded_weights(model)
    calib = [micro_features(c).T for c in _clips(data, calib_clips, seed=0, split="train")]  # (frames, 40) each
    # One cell at the top of the front end's range: the converter then picks the input scale ESPHome assumes
    # (26/255, zero point -128); the features' bottom (0) is in every clip's silence.
    calib[-1] = calib[-1].copy()
    calib[-1][len(calib[-1]) // 2, 0] = MICRO_MAX
    checks = [micro_features(c) for c in _clips(data, check_clips, seed=1, split="val")]  # (40, frames) each

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = model_name(wake_word)
    with tempfile.TemporaryDirectory(prefix="mww_export_") as tmp:
        work = Path(tmp)
        (work / "spec.json").write_text(json.dumps(spec))
        np.savez(work / "weights.npz", **arrays)
        np.savez(work / "calib.npz", **{f"t_{i}": t for i, t in enumerate([checks[0].T] + calib)})
        py = tflite_python()
        logger.info("converting with %s", py)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the converter sees only its own packages
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = subprocess.run([py, str(Path(__file__).with_name("mww_tflite.py")), str(work)], capture_output=True,
                              text=True, env=env, check=False)
        if proc.returncode != 0:
            raise ExportError(f"the TFLite conversion failed ({py}):\n{proc.stderr[-3000:]}")
        tfr: dict[str, Any] = json.loads((work / "tflite_report.json").read_text())
        shutil.copy(work / "model.tflite", out_dir / f"{name}.tflite")

    # The weight transfer: the float streaming graph equals the torch window model once its buffers are full.
    steps = spec["window_steps"]
    ref0 = torch_stream_scores(model, checks[0])
    float_diff = float(np.abs(np.array(tfr.pop("float_check"))[steps - 1:] - ref0).max())
    if float_diff > 1e-3:
        raise ExportError(f"the TF graph does not reproduce the torch model (max |diff| {float_diff:.2e})")
    bad_ops = sorted(set(tfr["ops"]) - ESPHOME_OPS)
    if bad_ops:
        raise ExportError(f"ops ESPHome does not register: {bad_ops}")

    measured = tfr["arena_bytes"]
    arena = int(math.ceil(measured * ARENA_MARGIN / 4) * 4) if measured else ARENA_ESTIMATE
    manifest: dict[str, Any] = {
        "type": "micro",
        "wake_word": wake_word,
        "author": author,
        "website": website,
        "model": f"{name}.tflite",
        "trained_languages": list(trained_languages),
        "version": 2,
        "micro": {
            "probability_cutoff": round(cutoff, 4),
            "sliding_window_size": int(sliding_window_size),
            "feature_step_size": FEATURE_STEP_MS,
            "tensor_arena_size": arena,
            "minimum_esphome_version": MIN_ESPHOME,
        },
    }
    manifest_path = out_dir / f"{name}.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    # The int8 file through pymicro-wakeword's own loader against the torch model, clip by clip.
    check_manifest = out_dir / f".{name}.check.json"  # sliding window 1: compare single probabilities
    check_manifest.write_text(json.dumps({**manifest, "micro": {**manifest["micro"], "sliding_window_size": 1}}))
    diffs = []
    try:
        for f in checks:
            got = pymicro_scores(check_manifest, f)[steps - 1:]
            ref = torch_stream_scores(model, f)
            diffs.append(np.abs(got[:len(ref)] - ref[:len(got)]))
    finally:
        check_manifest.unlink()
    d = np.concatenate(diffs)
    report = {
        "format": "microwakeword",
        "checkpoint": str(checkpoint),
        "tflite": str(out_dir / f"{name}.tflite"),
        "manifest": str(manifest_path),
        "params": sum(p.numel() for p in model.backbone.parameters()),
        "window_frames": model.feat.window_frames,
        **tfr,
        "arena_measured": measured is not None,
        "tensor_arena_size": arena,
        "float_graph_vs_torch_max_abs": float_diff,
        "int8_vs_torch": {"clips": len(checks), "scores": int(d.size), "median_abs": float(np.median(d)),
                          "p99_abs": float(np.quantile(d, 0.99)), "max_abs": float(d.max())},
        "converter_python": py,
    }
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


__all__ = [
    "ESPHOME_OPS",
    "ExportError",
    "export_microwakeword",
    "folded_weights",
    "pymicro_scores",
    "tflite_python",
    "torch_stream_scores",
]
