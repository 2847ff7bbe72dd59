"""Build the int8 streaming .tflite of a MixedNet (models/mixednet.py) with TensorFlow's TFLite converter.

Runs in the converter's own environment (scripts/setup_tflite.sh -> .venv-tflite), as a script:
``mww_export.py`` writes the folded weights and the calibration features, calls this file with that
environment's Python, and reads back the .tflite and a JSON report. It imports numpy and TensorFlow only
(nothing of the project, whose packages that environment does not hold).

The graph is microWakeWord's streaming form: one call takes (1, stride, 40) features (int8 in the file),
the first convolution's kernel equals the stride (no state), and each MixConv block keeps the last
``kmax - 1`` steps of its input in a TF resource variable (VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE in the
.tflite; ESPHome gives a model up to 20 of them). Layout NHWC with time as height, width 1, features as
channels, as microWakeWord's. Ops: CONV_2D, DEPTHWISE_CONV_2D, ADD, CONCATENATION, STRIDED_SLICE, RESHAPE,
FULLY_CONNECTED, LOGISTIC, QUANTIZE and the variable ops, all in ESPHome's op resolver.

    python mww_tflite.py WORK_DIR

WORK_DIR holds spec.json, weights.npz and calib.npz (t_0: the check track, the rest: calibration); model.tflite and tflite_report.json are written there.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

_ARENA = r"""
import sys
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=1 << 20)
it.print_allocations()
"""


def arena_bytes(path: Path) -> int | None:
    """TFLite Micro's recorded arena use of ``path`` (x86-64 build), None without tflite-micro. Its allocator
    prints from C++, hence a child process whose output is read."""
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return None
    out = subprocess.run([sys.executable, "-c", _ARENA, str(path)], capture_output=True, text=True, check=False)
    m = re.search(r"Arena allocation total (\d+) bytes", out.stdout + out.stderr)
    if not m:
        raise RuntimeError(f"TFLite Micro could not load {path}: {(out.stdout + out.stderr)[-800:]}")
    return int(m.group(1))


def device_runtime_agreement(path: Path, blob: bytes, feats: np.ndarray, stride: int) -> dict | None:
    """The int8 file in TFLite Micro's interpreter (the runtime ESPHome runs) and in TFLite's, call by call over
    feats (frames, n_mels): their uint8 outputs side by side. None without tflite-micro."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return None
    import tensorflow as tf

    lite = tf.lite.Interpreter(model_content=blob)
    lite.allocate_tensors()
    inp, out = lite.get_input_details()[0], lite.get_output_details()[0]
    scale, zero = inp["quantization"]
    micro = runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    a, b = [], []
    for i in range(0, len(feats) - stride + 1, stride):
        q = np.clip(np.round(feats[None, i:i + stride] / scale + zero), -128, 127).astype(np.int8)
        lite.set_tensor(inp["index"], q)
        lite.invoke()
        a.append(int(lite.get_tensor(out["index"]).reshape(-1)[0]))
        micro.set_input(q, 0)
        micro.invoke()
        b.append(int(np.asarray(micro.get_output(0)).reshape(-1)[0]))
    d = np.abs(np.array(a) - np.array(b))
    return {"calls": len(a), "max_abs_uint8": int(d.max()), "identical": float(np.mean(d == 0))}


def build(spec: dict, w: dict):
    """The streaming tf.Module: __call__(x (1, stride, n_mels) float32) -> (1, 1) probability."""
    import tensorflow as tf

    stride, n_mels = spec["stride"], spec["n_mels"]

    class Streaming(tf.Module):
        def __init__(self):
            super().__init__()
            self.states = [tf.Variable(tf.zeros([1, b["kmax"] - 1, 1, b["cin"]]), trainable=False,
                                       name=f"stream_{i}") for i, b in enumerate(spec["blocks"])]

        @tf.function(input_signature=[tf.TensorSpec([1, stride, n_mels], tf.float32)])
        def __call__(self, x):
            h = tf.reshape(x, [1, stride, 1, n_mels])
            h = tf.nn.relu(tf.nn.conv2d(h, w["first_w"], [1, stride, 1, 1], "VALID") + w["first_b"])
            for i, b in enumerate(spec["blocks"]):
                full = tf.concat([self.states[i], h], axis=1)  # (1, kmax, 1, cin): the block's history + now
                self.states[i].assign(full[:, 1:])
                y = tf.nn.depthwise_conv2d(full, w[f"dw{i}"], [1, 1, 1, 1], "VALID")
                y = tf.nn.relu(tf.nn.conv2d(y, w[f"pw{i}_w"], [1, 1, 1, 1], "VALID") + w[f"pw{i}_b"])
                h = y + h if b["residual"] else y
            logit = tf.matmul(tf.reshape(h, [1, -1]), w["head_w"]) + w["head_b"]
            return tf.sigmoid(logit)

    return Streaming()


def stream(module, feats: np.ndarray, stride: int) -> np.ndarray:
    """Probabilities of ``module`` over feats (frames, n_mels), one per ``stride`` frames (state carried)."""
    out = [float(module(feats[None, i:i + stride]).numpy()[0, 0]) for i in range(0, len(feats) - stride + 1, stride)]
    return np.array(out, np.float32)


def main() -> None:
    import tensorflow as tf

    work = Path(sys.argv[1])
    spec = json.loads((work / "spec.json").read_text())
    w = {k: tf.constant(v) for k, v in np.load(work / "weights.npz").items()}
    calib = np.load(work / "calib.npz")
    tracks = [calib[k] for k in sorted(calib.files, key=lambda s: int(s.split("_")[1]))]
    stride = spec["stride"]

    # The float graph on the check track: the caller compares it with the torch model (weight transfer check).
    check = build(spec, w)
    float_check = stream(check, tracks[0], stride)

    module = build(spec, w)

    def representative():
        # Consecutive calls over whole tracks, the state carried between them, as microWakeWord calibrates.
        for t in tracks[1:]:  # tracks[0] is the check track, not calibration
            for i in range(0, len(t) - stride + 1, stride):
                yield [t[None, i:i + stride].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type, conv.inference_output_type = tf.int8, tf.uint8  # as microWakeWord's models
    conv.experimental_enable_resource_variables = True
    conv._experimental_variable_quantization = True  # int8 ring buffers, as microWakeWord converts them
    blob = conv.convert()
    path = work / "model.tflite"
    path.write_bytes(blob)

    it = tf.lite.Interpreter(model_content=blob)
    ops = sorted({o["op_name"] for o in it._get_ops_details()} - {"DELEGATE"})
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    report = {
        "tensorflow": tf.__version__,
        "bytes": len(blob),
        "ops": ops,
        "input": {"shape": [int(s) for s in inp["shape"]], "dtype": np.dtype(inp["dtype"]).name,
                  "scale": float(inp["quantization"][0]), "zero_point": int(inp["quantization"][1])},
        "output": {"shape": [int(s) for s in out["shape"]], "dtype": np.dtype(out["dtype"]).name,
                   "scale": float(out["quantization"][0]), "zero_point": int(out["quantization"][1])},
        "variables": len(spec["blocks"]),
        "arena_bytes": arena_bytes(path),
        "tflite_micro_vs_tflite": device_runtime_agreement(path, blob, tracks[0], stride),
        "float_check": float_check.tolist(),
    }
    (work / "tflite_report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
