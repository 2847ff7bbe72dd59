"""Detectors as the benchmark sees them: this project's checkpoints and ONNX files, openWakeWord, microWakeWord.

Every detector is driven the same way: ``reset()`` (fresh state, as after loading), then
``process(audio)`` with float32 mono audio at 16 kHz, returning the scores it produced for that
audio. Score ``i`` belongs to the audio that ends at ``first_end_s + i * hop_s`` seconds after the
reset; the benchmark uses that to attribute scores to clips.

Specs (``load_detector``): ``path/to/best.pt`` (a checkpoint in torch: the track's log-mel once, then
every window),
``model.onnx`` (the float or INT8 window export, onnxruntime), ``model.stream.onnx`` (the stateful
streaming export, fed hop by hop), ``oww:NAME`` (an openWakeWord 0.5.1 pretrained model such as
``oww:hey_jarvis``, or ``oww:path/NAME.onnx``, a custom one such as ``wakeword export --format openwakeword``
writes, through openWakeWord's own streaming API in 80 ms chunks), ``mww:NAME`` (a microWakeWord model bundled
with pymicro-wakeword 2.5.0: ``alexa``, ``hey_jarvis``, ``hey_mycroft``, ``okay_nabu``, or ``mww:path/NAME.json``,
through its own streaming API), ``a.pt+b.pt+c.pt`` (an ensemble: the
mean of its members' probabilities, window by window; members are checkpoints or window exports with the
same front end). ``label=spec`` names it in reports.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wakeword.audio.io import SAMPLE_RATE
from wakeword.defaults import FALLBACK_THRESHOLD, REFRACTORY_S, model_threshold
from wakeword.evaluation.scoring import TrackDetector, same_phrase
from wakeword.runtime.detector import trained_phrase

OWW_MODELS = ("alexa", "hey_mycroft", "hey_jarvis", "hey_rhasspy", "timer", "weather")
MWW_MODELS = ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu")  # bundled with pymicro-wakeword 2.5.0


WindowDetector = TrackDetector  # a project model scored over sliding windows (the scoring protocol's adapter)


class EnsembleDetector:
    """Several project models scored on the same windows; the score is the mean of their probabilities.

    The members must share the front end (sample rate, window, score hop), so window ``i`` of every member
    covers the same audio. Its cost is the members' costs summed: a device would run them all.
    """

    def __init__(self, members: list[WindowDetector], name: str):
        if len(members) < 2:
            raise ValueError(f"{name}: an ensemble needs at least two members")
        first = members[0]
        for m in members[1:]:
            if (m.sample_rate, m.hop_s, m.first_end_s) != (first.sample_rate, first.hop_s, first.first_end_s):
                raise ValueError(f"{name}: members {first.name} and {m.name} score different windows "
                                 "(front ends differ); an ensemble needs the same window and hop")
        phrases = {m.phrase for m in members if m.phrase}
        if len(phrases) > 1:
            raise ValueError(f"{name}: members were trained for different phrases {sorted(phrases)}")
        self.members, self.name, self.kind = members, name, "ensemble"
        self.phrase = next(iter(phrases), None)
        self.source = "+".join(m.source for m in members)
        self.sample_rate, self.hop_s, self.first_end_s = first.sample_rate, first.hop_s, first.first_end_s
        self.default_threshold = float(np.mean([m.default_threshold for m in members]))

    def reset(self) -> None:
        for m in self.members:
            m.reset()

    def process(self, audio: np.ndarray) -> np.ndarray:
        scores = [m.process(audio) for m in self.members]
        n = min(len(s) for s in scores)
        return np.mean([s[:n] for s in scores], axis=0).astype(np.float32)


class StreamingOnnxDetector:
    """The streaming export, fed in its own hop-sized chunks with onnxruntime (what a device runs)."""

    def __init__(self, path: str, name: str):
        from wakeword.runtime.onnx import OnnxStreamer

        self.streamer = OnnxStreamer(path)
        meta = self.streamer.session.get_modelmeta().custom_metadata_map
        c = self.streamer.c
        if c["sample_rate"] != SAMPLE_RATE:
            raise ValueError(f"{name}: model sample rate {c['sample_rate']} Hz, the benchmark runs at {SAMPLE_RATE}")
        self.name, self.kind, self.source = name, "onnx-streaming", _file_id(path)
        self.phrase = meta.get("phrase") and json.loads(meta["phrase"])
        self.sample_rate = c["sample_rate"]
        self.hop_s = c["chunk"] / c["sample_rate"]
        # the first score after the warm-up covers the sample cache plus (warmup_calls + 1) chunks
        self.first_end_s = (c["sample_cache"] + (c["warmup_calls"] + 1) * c["chunk"]) / c["sample_rate"]
        t = json.loads(meta.get("threshold", "null"))
        self.default_threshold = model_threshold(t)

    def reset(self) -> None:
        self.streamer.reset()

    def process(self, audio: np.ndarray) -> np.ndarray:
        return self.streamer.feed(audio)


class OpenWakeWordDetector:
    """An openWakeWord pretrained model, run through ``openwakeword.Model.predict`` in 80 ms chunks.

    ``reset()`` restores the state the model had right after loading (audio, mel and embedding
    buffers and the prediction history), so every clip and stream starts alike. Its front end
    (mel + embedding models) is counted in its cost: a device running one wake word pays for it.
    """

    CHUNK = 1280  # 80 ms at 16 kHz, the chunk size openWakeWord is built for

    def __init__(self, model_name: str, name: str):
        try:
            from openwakeword.model import Model
        except ImportError as exc:
            raise ImportError("openWakeWord is not installed: pip install --no-deps 'openwakeword==0.5.1' "
                              "(or `pip install -e .[peers]`)") from exc
        custom = model_name.endswith(".onnx")  # a custom model file (`wakeword export --format openwakeword`)
        if custom and not Path(model_name).is_file():
            raise ValueError(f"no openWakeWord model file {model_name}")
        if not custom and model_name not in OWW_MODELS:
            raise ValueError(f"unknown openWakeWord model '{model_name}'; pretrained ones: {list(OWW_MODELS)}, "
                             "or a custom model's path (NAME.onnx)")
        state = np.random.get_state()
        np.random.seed(0)  # its initial embedding buffer is computed from random noise
        try:
            self.model = Model(wakeword_models=[model_name], inference_framework="onnx")
        finally:
            np.random.set_state(state)
        key = next(iter(self.model.models))
        # Single-output models report under their own name; multi-class ones (timer: one class per
        # duration, class 0 = background) under their class labels: the score is the max over those.
        self.labels = ([key] if self.model.model_outputs[key] == 1
                       else list(self.model.class_mapping[key].values()))
        pre = self.model.preprocessor
        self._initial = {k: _copy(getattr(pre, k)) for k in
                         ("raw_data_buffer", "melspectrogram_buffer", "accumulated_samples",
                          "raw_data_remainder", "feature_buffer")}
        self.name, self.kind = name, "openwakeword"
        self.source = f"openwakeword-0.5.1:{_file_id(model_name) if custom else model_name}"
        self.phrase: str | None = model_name.replace("_", " ")
        self.default_threshold = FALLBACK_THRESHOLD  # openWakeWord's own default too
        if custom:  # our export: the phrase and the calibrated threshold are in its manifest
            manifest = Path(model_name).with_suffix(".json")
            m = json.loads(manifest.read_text()) if manifest.is_file() else {}
            self.phrase = m.get("wake_word")
            self.default_threshold = model_threshold(m.get("threshold"))
        self.sample_rate = SAMPLE_RATE
        self.hop_s = self.CHUNK / SAMPLE_RATE
        self.first_end_s = self.hop_s
        self._pending = np.zeros(0, np.int16)

    def reset(self) -> None:
        pre = self.model.preprocessor
        for k, v in self._initial.items():
            setattr(pre, k, _copy(v))
        self.model.reset()
        self._pending = np.zeros(0, np.int16)

    def process(self, audio: np.ndarray) -> np.ndarray:
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).astype(np.int16)
        pcm = np.concatenate([self._pending, pcm])
        n = len(pcm) // self.CHUNK
        out = np.empty(n, np.float32)
        for i in range(n):
            p = self.model.predict(pcm[i * self.CHUNK:(i + 1) * self.CHUNK])
            out[i] = max(p[k] for k in self.labels)
        self._pending = pcm[n * self.CHUNK:]
        return out


class MicroWakeWordDetector:
    """A microWakeWord model (the int8 streaming TFLite models ESPHome runs), through ``pymicro-wakeword``'s own
    streaming API: ``MicroWakeWordFeatures`` (the TFLite-Micro audio front end, one 40-band frame per 10 ms)
    then ``MicroWakeWord.process_streaming_prob`` frame by frame.

    The model runs once per ``stride`` frames (30 ms for the bundled ones); the score of each run is what the
    device compares with ``probability_cutoff``: the mean of the last ``sliding_window_size`` probabilities
    (0 until that many runs). ``reset()`` reloads the model (its streaming state lives in the interpreter's
    variables) and resets the front end. The default threshold is the model's own ``probability_cutoff``.
    """

    FRAME = 160  # samples per front-end frame (10 ms)
    WINDOW = 480  # samples of the front end's first frame (30 ms)

    def __init__(self, model_name: str, name: str):
        try:
            from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model
        except ImportError as exc:
            raise ImportError("pymicro-wakeword is not installed: pip install 'pymicro-wakeword==2.5.0'") from exc
        custom = model_name.endswith(".json")  # a manifest next to its .tflite, as ESPHome reads it
        if custom:
            if not Path(model_name).is_file():
                raise ValueError(f"no microWakeWord manifest {model_name}")
            self.model = MicroWakeWord.from_config(model_name)
        else:
            if model_name not in MWW_MODELS:
                raise ValueError(f"unknown microWakeWord model '{model_name}'; bundled ones: {list(MWW_MODELS)}, "
                                 "or a manifest's path (NAME.json)")
            self.model = MicroWakeWord.from_builtin(Model(model_name))
        self.features = MicroWakeWordFeatures()
        self.name, self.kind = name, "microwakeword"
        self.source = f"pymicro-wakeword-2.5.0:{_file_id(model_name) if custom else model_name}"
        self.phrase = self.model.wake_word.lower()
        self.sample_rate = SAMPLE_RATE
        self.hop_s = self.model.stride * self.FRAME / SAMPLE_RATE
        self.first_end_s = (self.WINDOW + (self.model.stride - 1) * self.FRAME) / SAMPLE_RATE
        self.default_threshold = float(self.model.probability_cutoff)
        self._frames = 0  # front-end frames given to the model since the last reset

    def reset(self) -> None:
        self.model.reset()
        self.features.reset()
        self._frames = 0

    def process(self, audio: np.ndarray) -> np.ndarray:
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).astype(np.int16)
        out = []
        for frame in self.features.process_streaming(pcm.tobytes()):
            p = self.model.process_streaming_prob(frame)
            self._frames += 1
            if self._frames % self.model.stride == 0:  # the frames that ran the model (the others return 0)
                out.append(p)
        return np.array(out, np.float32)


def _file_id(path) -> str:
    """A file's identity for result caches: resolved path, size and modification time."""
    p = Path(path).resolve()
    st = p.stat() if p.is_file() else None
    return f"{p}@{st.st_size}:{st.st_mtime_ns}" if st else str(p)


def _copy(v):
    from collections import deque

    if isinstance(v, deque):
        return deque(v, maxlen=v.maxlen)
    return v.copy() if isinstance(v, np.ndarray) else v


class _CachedEmbeddingScores:
    """A checkpoint's ``score_track`` through embeddings computed once per distinct audio and kept under a folder:
    many heads on one frozen embedding (an ablation) are scored on the same audio for the cost of the heads."""

    def __init__(self, det, cache_dir: Path):
        from wakeword.training.feature_cache import EmbeddingTrackScorer

        self.det, self.feat, self.metadata = det, det.feat, det.metadata
        self.default_threshold = det.default_threshold
        self.scorer = EmbeddingTrackScorer(det.model, Path(cache_dir), dtype=np.float32, memory=False)

    def score_track(self, audio: np.ndarray) -> tuple[np.ndarray, float]:
        audio = np.asarray(audio, np.float32)
        n = self.feat.window_samples
        if len(audio) < n:  # as Detector.score_track: one zero-padded window
            audio = np.concatenate([audio, np.zeros(n - len(audio), np.float32)])
        return self.scorer.score_track(audio)


def load_detector(spec: str, embedding_cache: str | Path | None = None):
    """A detector from a spec (see the module docstring); raises ValueError with the reason.

    embedding_cache: a folder where checkpoints on a frozen embedding (speech_embedding) keep the embeddings of
    the audio they score, shared by every such checkpoint (scores are the same to float rounding; their CPU cost is
    then not measured and reported as NaN)."""
    label, target = spec.split("=", 1) if "=" in spec else ("", spec)
    if "+" in target and not Path(target).is_file():
        members = [load_detector(part, embedding_cache) for part in target.split("+")]
        if not all(isinstance(m, WindowDetector) for m in members):
            raise ValueError(f"detector '{spec}': ensemble members must be .pt checkpoints or window .onnx exports")
        return EnsembleDetector(members, label or "+".join(m.name for m in members))
    if target.startswith("oww:"):
        model = target[4:]
        return OpenWakeWordDetector(model, label or f"openWakeWord {Path(model).stem}")
    if target.startswith("mww:"):
        model = target[4:]
        return MicroWakeWordDetector(model, label or f"microWakeWord {Path(model).stem}")
    path = Path(target)
    if not path.is_file():
        raise ValueError(f"detector '{spec}': no such file {path}")
    name = label or path.name
    if path.suffix == ".pt":
        from wakeword.runtime.detector import Detector

        det = Detector.load(path)
        phrase = trained_phrase(det.metadata.get("config", {}).get("data_dir"))
        if embedding_cache is not None and getattr(det.model.backbone, "embedding_frozen", False):
            wd = TrackDetector(_CachedEmbeddingScores(det, Path(embedding_cache)), name, phrase, "torch")
            wd.source = _file_id(det.metadata.get("path", ""))
            wd.cost_measured = False
            return wd
        wd = TrackDetector(det, name, phrase, "torch")
        wd.source = _file_id(det.metadata.get("path", ""))
        return wd
    if path.suffix == ".onnx":
        import onnxruntime as ort

        try:
            meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        except Exception as exc:
            raise ValueError(f"detector '{spec}': not a loadable ONNX model: {exc}") from exc
        fmt = meta.custom_metadata_map.get("format", "")
        if fmt.endswith("-streaming"):
            return StreamingOnnxDetector(str(path), name)
        from wakeword.runtime.onnx import OnnxDetector

        onnx_det = OnnxDetector(path)
        phrase = onnx_det.metadata.get("phrase")
        kind = "onnx-int8" if "quantization" in onnx_det.metadata else "onnx"
        wd = TrackDetector(onnx_det, name, json.loads(phrase) if phrase else None, kind)
        wd.source = _file_id(onnx_det.metadata.get("path", ""))
        return wd
    raise ValueError(f"detector '{spec}': expected a .pt checkpoint, an .onnx export, oww:NAME or mww:NAME")


def _scores_in_chunks(det, audio: np.ndarray, chunk_s: float, bar) -> np.ndarray:
    """``det.process(audio)`` after a reset, computed in pieces of about ``chunk_s`` seconds so a bar can follow a
    long file. Stateful detectors are fed the pieces in order; stateless window detectors get overlapping pieces
    that start on a score boundary, so every score is the one the whole track gives."""
    sr = det.sample_rate
    det.reset()
    if not isinstance(det, (TrackDetector, EnsembleDetector)):
        step = max(1, int(chunk_s * sr))
        out = []
        for i in range(0, len(audio), step):
            out.append(det.process(audio[i:i + step]))
            bar.update(min(step, len(audio) - i) / sr)
        return np.concatenate(out) if out else np.zeros(0, np.float32)
    hop, win = int(round(det.hop_s * sr)), int(round(det.first_end_s * sr))
    per = max(1, int(chunk_s * sr) // hop)  # scores kept per piece
    out, k = [], 0
    while len(audio) - k * hop > per * hop + win:  # a piece holds ``per`` whole windows, the rest comes after
        out.append(det.process(audio[k * hop:k * hop + (per - 1) * hop + win])[:per])
        bar.update(per * hop / sr)
        k += per
    out.append(det.process(audio[k * hop:]))  # the last piece: every window left
    bar.update((len(audio) - k * hop) / sr)
    return np.concatenate(out)


def detect_in_files(det, files, threshold: float | None = None, refractory_s: float = REFRACTORY_S,
                    progress: bool = True, chunk_s: float = 60.0) -> list[dict]:
    """Events of a detector (``load_detector``) in audio files (any format, rate, channel count).

    threshold: None = the detector's own. Each file is scored from a fresh state; a file shorter than the first
    window is padded with silence. Returns per file {file, max_score, events_s (end of the window that fired, s)}
    or {file, error}. Progress: a bar over the files, and one over the seconds of each file longer than ``chunk_s``.
    """
    from tqdm import tqdm

    from wakeword.audio.io import AudioError, load_audio
    from wakeword.evaluation.metrics import detect_events

    thr = det.default_threshold if threshold is None else threshold
    results: list[dict] = []
    for f in tqdm(files, desc="scoring", unit="file", disable=not progress or len(files) < 2, leave=False):
        try:
            audio = load_audio(f)
        except AudioError as exc:
            results.append({"file": str(f), "error": str(exc)})
            continue
        need = int(np.ceil(det.first_end_s * det.sample_rate))  # audio for the first score
        if len(audio) < need:
            audio = np.concatenate([audio, np.zeros(need - len(audio), np.float32)])
        seconds = len(audio) / det.sample_rate
        with tqdm(total=round(seconds, 1), desc=Path(f).name, unit="s", leave=False,
                  disable=not progress or seconds <= chunk_s) as bar:
            s = _scores_in_chunks(det, audio, chunk_s, bar)
        times = detect_events(s, thr, det.hop_s, refractory_s)
        results.append({"file": str(f), "max_score": round(float(s.max()), 4) if len(s) else 0.0,
                        "events_s": [round(float(t) + det.first_end_s, 2) for t in times]})
    return results


__all__ = ["MWW_MODELS", "OWW_MODELS", "EnsembleDetector", "MicroWakeWordDetector", "OpenWakeWordDetector",
           "StreamingOnnxDetector", "WindowDetector", "detect_in_files", "load_detector", "same_phrase"]
