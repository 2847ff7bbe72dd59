"""Do ONNX Runtime's INT8 kernels on this CPU compute what the quantized graph says?

    python benchmarks/int8_kernels.py

For each static-quantization recipe (activation / weight types, 8- or 7-bit weights) the same model
(an untrained student with BatchNorm statistics from espeak-ng speech, so its scores vary) is quantized
and scored on speech windows twice: by ORT with its graph optimizations (DequantizeLinear -> Conv ->
QuantizeLinear fused into integer kernels chosen for this CPU) and with none (the same graph run as
float ops between quantize / dequantize: the exact integer semantics, independent of the CPU). Printed:
mean / max |logit| difference fused vs reference, and mean |logit| error of each against the float model.
On x86 without VNNI (`grep -o 'avx512_vnni\\|avx_vnni' /proc/cpuinfo` prints nothing) uint8 x int8 pairs
are summed in int16 and saturate unless the weights use the reduced range [-64, 64].
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from conftest import responsive_model
    from wakeword.audio.tts import EspeakBackend, Prosody
    from wakeword.export import export_onnx

    torch.set_num_threads(1)
    b = EspeakBackend()
    texts = ["this is a short sentence about a computer in the kitchen",
             "please turn on the lights in the living room", "what is the weather going to be like tomorrow"]
    speech = np.concatenate([b.synthesize(t, b.voices()[i % 3], Prosody()) for i, t in enumerate(texts)])
    m = responsive_model(speech)
    n = m.feat.window_samples

    def windows(a: np.ndarray, hop: int) -> np.ndarray:
        return np.stack([a[i:i + n] for i in range(0, len(a) - n, hop)]).astype(np.float32)

    cal, test = windows(speech, n // 8), windows(speech[len(speech) // 3:], n // 5)
    tmp = Path(tempfile.mkdtemp())
    f = export_onnx(m, tmp / "m.onnx")

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    with torch.no_grad():
        flt = m(torch.from_numpy(test)).numpy()

    def run(path: str, optimized: bool) -> np.ndarray:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                       else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return logit(np.concatenate([s.run(None, {"audio": x[None]})[0].reshape(-1) for x in test]))

    g = onnx.load(str(f)).graph
    net = [nd.name for nd in g.node if nd.op_type in ("Conv", "Gemm") and "frontend" not in nd.name]
    exclude = [nd.name for nd in g.node if "frontend" in nd.name] + net[:1] + net[-1:]  # as quantize_int8

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"audio": x[None]} for x in cal])

        def get_next(self):
            return next(self.it, None)

    S8, U8 = QuantType.QInt8, QuantType.QUInt8
    recipes = {"act s8, weights s8 (8-bit)": (S8, S8, False), "act s8, weights s8 (7-bit, reduce_range)": (S8, S8, True),
               "act u8, weights s8 (8-bit)": (U8, S8, False), "act u8, weights s8 (7-bit, reduce_range)": (U8, S8, True),
               "act u8, weights u8 (8-bit)": (U8, U8, False)}
    print(f"{'QDQ recipe':42s} fused-vs-ref mean / max   ref-vs-float   fused-vs-float")
    for name, (act, wt, reduce) in recipes.items():
        q = str(tmp / "q.onnx")
        quantize_static(str(f), q, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv", "Gemm"],
                        per_channel=True, activation_type=act, weight_type=wt, reduce_range=reduce,
                        nodes_to_exclude=exclude)
        fused, ref = run(q, True), run(q, False)
        print(f"{name:42s} {np.abs(fused - ref).mean():8.3f} / {np.abs(fused - ref).max():6.3f}"
              f"   {np.abs(ref - flt).mean():12.3f}   {np.abs(fused - flt).mean():14.3f}")
    print(f"({len(test)} windows; float logit std {flt.std():.2f})")


if __name__ == "__main__":
    main()
