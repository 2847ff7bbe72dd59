"""Can this machine build what ESPHome's microWakeWord runs? A toolchain check for issue #19, item 2.

Runs in a separate virtual environment (the converters are not part of the set-up; docs/BENCHMARKS.md,
"TFLite toolchain"):

    python -m venv --system-site-packages /work/venv19
    /work/venv19/bin/pip install -c constraints.txt tensorflow-cpu==2.21.0 tflite-micro
    /work/venv19/bin/python benchmarks/tflite_toolchain.py --out docs

1. Builds a toy streaming model the way microWakeWord's are built: 3 new 40-band feature frames per call, a
   ring buffer of the 6 frames before them kept in a TF resource variable (VAR_HANDLE / READ_VARIABLE /
   ASSIGN_VARIABLE in the .tflite), a linear layer and a sigmoid; converted by TensorFlow's TFLite converter
   to full int8 (int8 input, uint8 output, int8 variables) with a representative data set.
2. Loads it with pymicro-wakeword's own ``MicroWakeWord.from_config`` (an ESPHome-style manifest next to it)
   and compares its streaming probabilities with the float model's on random features in the front end's
   range, and with what a model that lost its state would give (so a dropped state cannot pass).
3. Measures the tensor arena of the toy and of pymicro-wakeword's bundled models in TFLite Micro (the
   ``tflite-micro`` package's interpreter, the runtime ESPHome runs on the ESP32-S3).
Writes ``<out>/tflite_toolchain.json`` and prints it.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

STRIDE, KEEP, BANDS = 3, 6, 40  # frames per call, frames of history, features per frame (microWakeWord's)

_ARENA = r"""
import sys
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=1 << 20)
it.print_allocations()
"""


def arena_bytes(path: Path) -> int:
    """TFLite Micro's recorded arena use for ``path`` (its allocator prints it from C++, hence the subprocess)."""
    out = subprocess.run([sys.executable, "-c", _ARENA, str(path)], capture_output=True, text=True, check=True)
    m = re.search(r"Arena allocation total (\d+) bytes", out.stdout + out.stderr)
    if not m:
        raise RuntimeError(f"no arena figure for {path}: {out.stderr[-500:]}")
    return int(m.group(1))


def toy_weights(seed: int = 0) -> tuple[np.ndarray, np.float32]:
    """The toy's linear layer: weights ((KEEP + STRIDE) * BANDS, 1) and bias."""
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal(((KEEP + STRIDE) * BANDS, 1))).astype(np.float32), np.float32(-1.0)


def toy_reference(feats: np.ndarray, w: np.ndarray, b: np.float32, stateful: bool = True) -> np.ndarray:
    """The toy in float, streamed: feats (frames, 40) -> one probability per STRIDE frames. ``stateful=False``:
    what a model that lost its ring buffer would give."""
    state, out = np.zeros((KEEP, BANDS), np.float32), []
    for i in range(0, len(feats) - STRIDE + 1, STRIDE):
        full = np.concatenate([state if stateful else np.zeros_like(state), feats[i:i + STRIDE]])
        state = full[STRIDE:]
        out.append(1 / (1 + np.exp(-(full.reshape(-1) @ w[:, 0] + b))))
    return np.array(out)


def toy_model(w: np.ndarray, b: np.float32):
    import tensorflow as tf

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            self.state = tf.Variable(tf.zeros([1, KEEP, BANDS]), trainable=False, name="state")

        @tf.function(input_signature=[tf.TensorSpec([1, STRIDE, BANDS], tf.float32)])
        def __call__(self, x):
            full = tf.concat([self.state, x], axis=1)
            self.state.assign(full[:, STRIDE:])
            return tf.sigmoid(tf.matmul(tf.reshape(full, [1, -1]), w) + b)

    return Toy()


def main() -> None:
    import tensorflow as tf
    from pymicro_wakeword import MicroWakeWord

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs")
    ap.add_argument("--fixture", help="also copy toy.tflite and toy.json here (tests/data/mww_toy)")
    a = ap.parse_args()
    w, b = toy_weights(0)
    toy = toy_model(w, b)
    feats = np.random.default_rng(1).uniform(0, 26, (600, BANDS)).astype(np.float32)  # the front end's range

    def representative():
        for i in range(0, 300, STRIDE):
            yield [feats[None, i:i + STRIDE]]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([toy.__call__.get_concrete_function()], toy)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type, conv.inference_output_type = tf.int8, tf.uint8  # as microWakeWord's models
    conv.experimental_enable_resource_variables = True
    conv._experimental_variable_quantization = True  # int8 ring buffers, as microWakeWord converts them
    blob = conv.convert()

    tmp = Path(tempfile.mkdtemp())
    (tmp / "toy.tflite").write_bytes(blob)
    (tmp / "toy.json").write_text(json.dumps({
        "type": "micro", "wake_word": "toy", "model": "toy.tflite", "version": 2,
        "micro": {"probability_cutoff": 0.5, "feature_step_size": 10, "sliding_window_size": 1,
                  "tensor_arena_size": 8000, "minimum_esphome_version": "2024.7.0"}}))
    mww = MicroWakeWord.from_config(tmp / "toy.json")
    got = []
    for i, f in enumerate(feats):
        p = mww.process_streaming_prob(f.reshape(1, 1, BANDS))
        if (i + 1) % mww.stride == 0:
            got.append(p)
    got = np.array(got)
    ref, stateless = toy_reference(feats, w, b), toy_reference(feats, w, b, stateful=False)

    from ai_edge_litert.interpreter import Interpreter

    ops = sorted({o["op_name"] for o in Interpreter(model_content=blob)._get_ops_details()} - {"DELEGATE"})
    import pymicro_wakeword

    bundled = Path(pymicro_wakeword.__file__).parent / "models"
    report = {
        "tensorflow": tf.__version__,
        "toy": {"bytes": len(blob), "ops": ops, "stride": mww.stride,
                "input": [str(np.dtype(mww.input_dtype)), float(mww.input_scale), int(mww.input_zero_point)],
                "output": str(np.dtype(mww.output_dtype)), "arena_bytes": arena_bytes(tmp / "toy.tflite"),
                "max_abs_diff_vs_float": float(np.abs(got - ref).max()),
                "median_abs_diff_vs_float": float(np.median(np.abs(got - ref))),
                "median_abs_diff_vs_stateless": float(np.median(np.abs(got - stateless)))},
        "bundled": {p.stem: {"bytes": p.stat().st_size, "arena_bytes": arena_bytes(p),
                             "manifest_tensor_arena_size":
                                 json.loads(p.with_suffix(".json").read_text())["micro"]["tensor_arena_size"]}
                    for p in sorted(bundled.glob("*.tflite"))},
        "command": f"/work/venv19/bin/python benchmarks/tflite_toolchain.py --out {a.out}"
                   + (f" --fixture {a.fixture}" if a.fixture else ""),
    }
    if a.fixture:
        Path(a.fixture).mkdir(parents=True, exist_ok=True)
        for f in ("toy.tflite", "toy.json"):
            shutil.copy(tmp / f, Path(a.fixture) / f)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "tflite_toolchain.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
