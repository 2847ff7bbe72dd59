"""Run an exported wake-word detector on a WAV file (or the microphone) with onnxruntime only.

    python examples/onnx_stream.py model.stream.onnx recording.wav [--threshold T]
    python examples/onnx_stream.py model.stream.onnx --mic          # needs `pip install sounddevice`

No torch and no wakeword package: the front end is inside the graph. The host only keeps the state
tensors (a sample cache plus the caches the contract lists) and feeds one hop of 16 kHz float32 audio
per call; the contract (chunk size, cache shapes, warm-up calls) is read from the model's metadata.
"""
import argparse
import json
import sys

import numpy as np
import onnxruntime as ort


class Streamer:
    def __init__(self, path: str):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        meta = self.sess.get_modelmeta().custom_metadata_map
        if meta.get("format") != "wakeword-onnx-v1-streaming":
            sys.exit(f"{path} is not a wakeword streaming export (use `wakeword export --streaming`)")
        self.c = json.loads(meta["stream"])
        t = json.loads(meta.get("threshold", "null"))  # calibrated when the model was trained
        self.default_threshold = 0.5 if t is None else float(t)
        self.pending = np.zeros(0, np.float32)
        self.samples = None
        shapes = self.c.get("caches") or {"feature_cache": [1, self.c["n_mels"], self.c["feature_cache_frames"]]}
        self.caches = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
        self.calls = 0

    def feed(self, chunk: np.ndarray) -> list[float]:
        self.pending = np.concatenate([self.pending, chunk.astype(np.float32)])
        if self.samples is None:
            if len(self.pending) < self.c["sample_cache"]:
                return []
            self.samples, self.pending = self.pending[None, : self.c["sample_cache"]], self.pending[self.c["sample_cache"]:]
        scores = []
        n = self.c["chunk"]
        while len(self.pending) >= n:
            audio, self.pending = self.pending[None, :n], self.pending[n:]
            score, self.samples, *caches = self.sess.run(
                None, {"audio": audio, "sample_cache": self.samples, **self.caches})
            self.caches = dict(zip(self.caches, caches))
            self.calls += 1
            if self.calls > self.c["warmup_calls"]:
                scores.append(float(score[0]))
        return scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("wav", nargs="?")
    ap.add_argument("--mic", action="store_true")
    ap.add_argument("--threshold", type=float, default=None, help="default: the model's own (its metadata)")
    ap.add_argument("--refractory", type=float, default=1.0, help="seconds")
    a = ap.parse_args()
    st = Streamer(a.model)
    if a.threshold is None:
        a.threshold = st.default_threshold
    rate = st.c["sample_rate"]
    hop_s = st.c["chunk"] / rate
    last, t, above = -1e9, 0.0, False

    def handle(scores):
        nonlocal last, t, above
        for s in scores:
            t += hop_s
            if s >= a.threshold and not above and t - last >= a.refractory:
                print(f"wake word at {t:.2f} s (score {s:.3f})", flush=True)
                last = t
            above = s >= a.threshold

    if a.mic:
        import sounddevice as sd

        with sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=st.c["chunk"]) as mic:
            print("listening... Ctrl-C to stop")
            while True:
                block, _ = mic.read(st.c["chunk"])
                handle(st.feed(block[:, 0]))
    elif a.wav:
        import soundfile as sf

        audio, sr = sf.read(a.wav, dtype="float32", always_2d=True)
        if sr != rate:
            sys.exit(f"{a.wav} is {sr} Hz; this model needs {rate} Hz audio (resample first, e.g. with sox)")
        audio = audio.mean(axis=1)
        for i in range(0, len(audio), 1600):  # 100 ms blocks, as a microphone would deliver them
            handle(st.feed(audio[i:i + 1600]))
        print(f"done: {len(audio) / rate:.1f} s scored")
    else:
        ap.error("give a WAV file or --mic")


if __name__ == "__main__":
    main()
