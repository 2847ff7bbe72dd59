"""openWakeWord-format export of the speech-embedding detector: its head alone, as a custom openWakeWord model.

openWakeWord (0.5.1, and Home Assistant's openWakeWord add-on through Wyoming) runs the same frozen
front end as our default detector (``melspectrogram`` + Google's ``speech_embedding``, one 96-d embedding
per 80 ms) and then, for each custom wake word, a small model over the newest N embeddings. So a trained
speech-embedding detector ships to those runtimes as its head alone:

    input  ``embeddings`` (batch, N, 96) float32, oldest first (N = the embeddings the head reads for one
           score: 3 today; openWakeWord's stock models read 16), as ``AudioFeatures.get_features(N)`` gives
    output ``probability`` (batch, 1): the wake word's probability for the newest span

openWakeWord reads N from the input shape and the number of classes from the output shape, and names the
model after the file, so ``NAME.onnx`` loads unchanged with ``Model(wakeword_models=["NAME.onnx"],
inference_framework="onnx")``. Home Assistant's openWakeWord add-on (wyoming-openwakeword, on
pyopen-wakeword's TFLite runtime) loads ``.tflite`` files only: ``NAME.tflite`` is the same head, written
when litert-torch is installed (``export_openwakeword_tflite``). ``NAME.json`` next to them records the
phrase, the default threshold (the checkpoint's, calibrated on its validation split) and N.

Scores agree with ours up to two differences in openWakeWord's streaming front end: its embedding grid lies
one mel frame (10 ms) later than a track's (``OWW_FRAME_OFFSET``), and it applies the mel model's 80 dB
floor per 80 ms call, where our port applies it per embedding (models/speech_embedding.py). On audio with
a dynamic range under 80 dB the two are the same numbers; tests/test_oww_export.py measures the rest.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from wakeword.models.base import StreamingBackbone
from wakeword.models.kws import WakeWordModel
from wakeword.models.speech_embedding import EMBED_DIM, EMBED_STEP

logger = logging.getLogger(__name__)

OWW_FORMAT = "openwakeword-head-v1"  # our metadata key "format" in the ONNX file and the JSON manifest
OWW_VERSION = "0.5.1"  # the openWakeWord release whose front end and loader this targets
# openWakeWord's first streaming call computes 5 mel frames (1280 samples, no history), later calls 8, so
# its embeddings start on mel frames 1, 9, 17, ...: one frame after a track's (0, 8, 16, ...).
OWW_FRAME_OFFSET = 1  # mel frames (10 ms each)


def head_context(model: WakeWordModel) -> int:
    """Embeddings the head of a speech-embedding ``model`` reads for one score (its streaming graph's
    embedding cache plus the newest one), so the export follows the model, whatever its head's context."""
    if not isinstance(model.backbone, StreamingBackbone) or model.input_kind != "audio":
        raise ValueError(f"the openWakeWord format is the head over openWakeWord's speech embedding: it needs a "
                         f"speech_embedding model, not '{model.arch}' (train with `arch: speech_embedding`)")
    c = model.backbone.stream_step()[1]
    if c.get("stride") != EMBED_STEP or "embedding_cache" not in c.get("caches", {}):
        raise ValueError(f"'{model.arch}' does not stream one {EMBED_DIM}-d embedding per 80 ms call")
    return int(c["caches"]["embedding_cache"][-1]) + 1


class _Head(nn.Module):
    """embeddings (batch, N, 96), oldest first -> probability of the newest span (batch, 1).

    The same calls as the streaming graph's last step (``_head`` then ``classifier``), on N embeddings."""

    def __init__(self, model: WakeWordModel):
        super().__init__()
        self.backbone = model.backbone

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        logits = self.backbone.classifier(self.backbone._head(embeddings.transpose(1, 2)))  # (B, spans, 1)
        return torch.sigmoid(logits[:, -1])


def export_openwakeword_onnx(model: WakeWordModel, path: str | Path, metadata: dict | None = None,
                             opset: int = 13) -> Path:
    """Write the head as an ONNX model openWakeWord loads as a custom wake word; returns the path.

    opset 13: every onnxruntime openWakeWord 0.5.1 accepts (>= 1.10) runs it."""
    import onnx

    from wakeword.export.graph import compact_names

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: openWakeWord picks its runtime by the file's extension: name it NAME.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = head_context(model)
    head = _Head(model.cpu().eval()).eval()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(head, (torch.zeros(1, n, EMBED_DIM),), str(path), input_names=["embeddings"],
                          output_names=["probability"], dynamic_axes={"embeddings": {0: "batch"},
                                                                      "probability": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    compact_names(path)
    proto = onnx.load(str(path))
    meta = {"format": OWW_FORMAT, "embeddings": str(n), "openwakeword": OWW_VERSION,
            **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return path


def tflite_converter_available() -> bool:
    """Whether litert-torch (PyTorch -> LiteRT/TFLite) is importable here (see ``export_openwakeword_tflite``)."""
    import importlib.util

    return importlib.util.find_spec("litert_torch") is not None


def export_openwakeword_tflite(model: WakeWordModel, path: str | Path) -> Path:
    """Write the head as a TFLite model (the format Home Assistant's openWakeWord add-on loads); returns the path.

    Converted by litert-torch, which is not part of the set-up: it needs jax, torchao and ``xdsl``, which pins
    typing-extensions below 4.13 (a downgrade that pydantic, hence the web UI, does not accept), so it lives in
    its own virtual environment (docs/OPENWAKEWORD.md). Same input / output contract as the ONNX head."""
    try:
        import litert_torch
    except ImportError as exc:
        raise ValueError("the TFLite head needs litert-torch==0.10.0 (not in the set-up: install it in a separate "
                         "virtual environment, see docs/OPENWAKEWORD.md)") from exc
    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"{path}: name the TFLite model NAME.tflite")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = head_context(model)
    edge = litert_torch.convert(_Head(model.cpu().eval()).eval(), (torch.zeros(1, n, EMBED_DIM),))
    edge.export(str(path))
    return path


def export_openwakeword(checkpoint: str | Path, out: str | Path, tflite: bool | None = None) -> dict:
    """``NAME.onnx`` (the head, see the module docstring), ``NAME.tflite`` (the same head for Home Assistant's
    add-on; ``tflite``: True = required, None = when litert-torch is installed, False = no) and ``NAME.json``
    (the manifest) from a speech-embedding checkpoint. Returns the manifest, with the paths written."""
    from wakeword.runtime.detector import trained_phrase
    from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt)
    phrase = trained_phrase(ckpt.get("config", {}).get("data_dir"))
    threshold = ckpt.get("threshold")
    out = Path(out)
    path = export_openwakeword_onnx(model, out, metadata={"phrase": phrase, "threshold": threshold})
    tflite_path = None
    if tflite or (tflite is None and tflite_converter_available()):
        tflite_path = export_openwakeword_tflite(model, out.with_suffix(".tflite"))
    elif tflite is None:
        logger.warning("no NAME.tflite written (litert-torch is not installed): openWakeWord's Python package "
                       "loads %s; Home Assistant's add-on loads .tflite only (docs/OPENWAKEWORD.md)", path.name)
    params = sum(p.numel() for name, p in model.backbone.named_parameters() if not name.startswith("embedding."))
    manifest = {
        "format": OWW_FORMAT,
        "wake_word": phrase,
        "model": path.name,
        "tflite": tflite_path.name if tflite_path else None,  # the same head for Home Assistant's add-on
        "openwakeword_version": OWW_VERSION,
        "embeddings": head_context(model),  # N: the model's input is (1, N, 96)
        # the checkpoint's calibrated default (None: the run had no validation negatives; 0.5 is openWakeWord's)
        "threshold": threshold,
        "head_parameters": params,
        "kib": round(path.stat().st_size / 1024, 1),
        "tflite_kib": round(tflite_path.stat().st_size / 1024, 1) if tflite_path else None,
        "source_checkpoint": str(Path(checkpoint).resolve()),
    }
    manifest_path = out.with_suffix(".json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("openWakeWord model %s (N = %d embeddings, threshold %s), manifest %s", path,
                manifest["embeddings"], threshold, manifest_path)
    return {**manifest, "path": str(path), "manifest": str(manifest_path)}


__all__ = ["OWW_FORMAT", "OWW_FRAME_OFFSET", "OWW_VERSION", "export_openwakeword", "export_openwakeword_onnx",
           "export_openwakeword_tflite", "head_context", "tflite_converter_available"]
