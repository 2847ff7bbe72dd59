"""A teacher built on a speech embedding pretrained on real speech: Google's ``speech_embedding`` (the
network openWakeWord uses as its frozen feature extractor), ported to torch from the two ONNX files
openWakeWord 0.5.1 ships (``melspectrogram.onnx``, ``embedding_model.onnx``), with a small trainable
head on top.

Why: every student and teacher here otherwise learns its representation from synthetic speech only,
and that is where the synthetic-to-real gap comes from (docs/RESULTS.md, issue #6). This embedding was
trained by its authors on a large corpus of real speech, so a head trained on our synthetic clips
generalises to real voices far better; distillation then carries that to the small student.

The port is exact (tests compare it with onnxruntime on the same audio): the mel front end is the ONNX
model's own STFT kernels and mel matrix, the embedding network is rebuilt layer by layer from the ONNX
graph. A checkpoint stores the layer plan and every weight, so it rebuilds without the ONNX files.

Shapes: input audio (batch, 1, samples) at 16 kHz, float in [-1, 1]; mel frames every 10 ms
(n_fft 512, hop 160, 32 bands); one embedding (96) per 76 mel frames (775 ms), every 8 frames (80 ms).
A 1 s window gives 3 embeddings.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000  # Hz; the embedding was trained at 16 kHz
EMBED_FRAMES = 76  # mel frames per embedding (775 ms)
EMBED_STEP = 8  # mel frames between embeddings (80 ms)
EMBED_DIM = 96
TOP_DB = 80.0  # the mel model clips at (max - 80 dB)
INT16 = 32767.0  # the ONNX front end reads 16-bit PCM values as float

KNOWN = {"onnx_dir", "hidden", "dropout", "train_embedding", "plan", "n_fft", "hop", "embed_mels", "n_mels"}
# n_mels is the project front end's band count, passed to every backbone: this one computes its own 32 bands


def default_onnx_dir() -> Path:
    """Where openWakeWord 0.5.1 keeps its feature models (ValueError when it is not installed)."""
    try:
        import openwakeword
    except ImportError as exc:
        raise ValueError("the speech_embedding teacher needs openWakeWord's feature models: install "
                         "openwakeword==0.5.1 (scripts/setup.sh does), or pass model: {onnx_dir: FOLDER} "
                         "holding melspectrogram.onnx and embedding_model.onnx") from exc
    return Path(openwakeword.__file__).parent / "resources" / "models"


def read_onnx(onnx_dir: str | Path) -> tuple[dict, list[dict], list[torch.Tensor]]:
    """-> (front-end tensors, layer plan, layer weights) from the two ONNX files in ``onnx_dir``."""
    import onnx
    from onnx import numpy_helper

    d = Path(onnx_dir)
    paths = [d / "melspectrogram.onnx", d / "embedding_model.onnx"]
    for p in paths:
        if not p.is_file():
            raise ValueError(f"speech_embedding: {p} not found (onnx_dir must hold melspectrogram.onnx and "
                             "embedding_model.onnx, as openWakeWord ships them)")
    mel = onnx.load(str(paths[0]))
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in mel.graph.initializer}
    front = {"stft_real": init["0.stft.conv_real.weight"], "stft_imag": init["0.stft.conv_imag.weight"],
             "mel": init["1.melW"]}
    conv = next(n for n in mel.graph.node if n.op_type == "Conv")
    hop = next(a.ints[0] for a in conv.attribute if a.name == "strides")
    front["hop"] = int(hop)

    emb = onnx.load(str(paths[1]))
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in emb.graph.initializer}
    plan: list[dict] = []
    weights: list[torch.Tensor] = []
    for node in emb.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            w = init[node.input[1]]
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[0] != pads[2] or pads[1] != pads[3]:
                raise ValueError(f"speech_embedding: asymmetric padding {pads} is not supported")
            plan.append({"op": "conv", "in": int(w.shape[1]), "out": int(w.shape[0]),
                         "kernel": [int(w.shape[2]), int(w.shape[3])], "pad": [int(pads[0]), int(pads[1])],
                         "bias": len(node.input) > 2})
            weights.append(w)
            if len(node.input) > 2:
                weights.append(init[node.input[2]])
        elif node.op_type == "LeakyRelu":
            plan.append({"op": "leaky_relu", "alpha": float(attrs.get("alpha", 0.01))})
        elif node.op_type == "Max":
            floor = init[node.input[1]]
            plan.append({"op": "floor", "value": float(floor.reshape(-1)[0])})
        elif node.op_type == "MaxPool":
            plan.append({"op": "max_pool", "kernel": list(attrs["kernel_shape"]), "stride": list(attrs["strides"])})
        elif node.op_type != "Reshape":
            raise ValueError(f"speech_embedding: unexpected ONNX op {node.op_type} in {paths[1]}")
    return front, plan, weights


class _Floor(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.value)


def _build(plan: list[dict]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for p in plan:
        if p["op"] == "conv":
            layers.append(nn.Conv2d(p["in"], p["out"], tuple(p["kernel"]), padding=tuple(p["pad"]), bias=p["bias"]))
        elif p["op"] == "leaky_relu":
            layers.append(nn.LeakyReLU(p["alpha"]))
        elif p["op"] == "floor":
            layers.append(_Floor(p["value"]))
        elif p["op"] == "max_pool":
            layers.append(nn.MaxPool2d(tuple(p["kernel"]), tuple(p["stride"])))
        else:
            raise ValueError(f"speech_embedding: unknown layer {p['op']}")
    return nn.Sequential(*layers)


class SpeechEmbedding(nn.Module):
    """audio (batch, samples) in [-1, 1] at 16 kHz -> embeddings (batch, 96, frames), one per 80 ms."""

    def __init__(self, plan: list[dict], n_fft: int = 512, hop: int = 160, n_mels: int = 32):
        super().__init__()
        self.plan, self.n_fft, self.hop, self.n_mels = plan, n_fft, hop, n_mels
        n_bins = n_fft // 2 + 1
        # DFT kernels and mel matrix: buffers, so a checkpoint carries them (no ONNX file needed to rebuild).
        self.register_buffer("stft_real", torch.zeros(n_bins, 1, n_fft))
        self.register_buffer("stft_imag", torch.zeros(n_bins, 1, n_fft))
        self.register_buffer("mel", torch.zeros(n_bins, n_mels))
        self.net = _build(plan)

    @classmethod
    def from_onnx(cls, onnx_dir: str | Path) -> SpeechEmbedding:
        front, plan, weights = read_onnx(onnx_dir)
        m = cls(plan, int(front["stft_real"].shape[-1]), front["hop"], int(front["mel"].shape[1]))
        with torch.no_grad():
            m.stft_real.copy_(front["stft_real"])
            m.stft_imag.copy_(front["stft_imag"])
            m.mel.copy_(front["mel"])
            params = [p for layer in m.net if isinstance(layer, nn.Conv2d)
                      for p in ([layer.weight, layer.bias] if layer.bias is not None else [layer.weight])]
            if len(params) != len(weights):
                raise ValueError("speech_embedding: ONNX weights do not match the layer plan")
            for p, w in zip(params, weights):
                p.copy_(w)
        return m

    def melspectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, frames, n_mels), openWakeWord's scaling (dB / 10 + 2)."""
        x = (audio * INT16).unsqueeze(1)
        power = F.conv1d(x, self.stft_real, stride=self.hop) ** 2 + F.conv1d(x, self.stft_imag, stride=self.hop) ** 2
        db = 10.0 * torch.log10(torch.matmul(power.transpose(1, 2), self.mel).clamp(min=1e-10))
        # top_db per window (the ONNX model takes the max over everything it is given, one clip at a time)
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - TOP_DB)
        return db / 10.0 + 2.0

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = self.melspectrogram(audio)  # (B, T, 32)
        if mel.shape[1] < EMBED_FRAMES:
            raise ValueError(f"speech_embedding needs at least {EMBED_FRAMES} mel frames "
                             f"({((EMBED_FRAMES - 1) * self.hop + self.n_fft) / SAMPLE_RATE:.3f} s of audio)")
        win = mel.unfold(1, EMBED_FRAMES, EMBED_STEP)  # (B, W, 32, 76)
        b, w = win.shape[:2]
        e = self.net(win.transpose(2, 3).reshape(b * w, 1, EMBED_FRAMES, self.n_mels))  # (B*W, 96, 1, 1)
        return e.reshape(b, w, -1).transpose(1, 2)


class SpeechEmbeddingTeacher(nn.Module):
    """Teacher backbone on raw audio: the frozen pretrained embedding plus a trainable head.

    forward_features(audio: (batch, 1, samples)) -> (logits (batch,), [embeddings (batch, 96, frames),
    head features (batch, hidden, frames - 2)]), frames every 80 ms.

    Parameters (a dict, stored in checkpoints): ``onnx_dir`` (folder with openWakeWord's
    melspectrogram.onnx and embedding_model.onnx; default: the installed openwakeword package),
    ``hidden`` (head width, 128), ``dropout`` (0.3), ``train_embedding`` (fine-tune the embedding too;
    default false: it is what carries real speech, and synthetic clips would pull it toward TTS).
    """

    input_kind = "audio"
    sample_rate = SAMPLE_RATE  # the embedding was trained at 16 kHz; WakeWordModel refuses other front ends

    def __init__(self, params: dict):
        super().__init__()
        unknown = set(params) - KNOWN
        if unknown:
            raise ValueError(f"unknown speech_embedding parameters: {sorted(unknown)}; known: "
                             f"{sorted(KNOWN - {'plan', 'n_fft', 'hop', 'embed_mels', 'n_mels'})}")
        if params.get("plan"):  # rebuilt from a checkpoint: its state dict carries the weights
            self.embedding = SpeechEmbedding(params["plan"], params["n_fft"], params["hop"], params["embed_mels"])
        else:
            self.embedding = SpeechEmbedding.from_onnx(params.get("onnx_dir") or default_onnx_dir())
        self.train_embedding = bool(params.get("train_embedding", False))
        self.embedding.requires_grad_(self.train_embedding)
        hidden = int(params.get("hidden", 128))
        if hidden < 1:
            raise ValueError("speech_embedding: hidden must be >= 1")
        dropout = float(params.get("dropout", 0.3))
        # Three consecutive embeddings (a 1 s window) -> hidden: the order of the 80 ms steps matters.
        self.head_in = nn.Conv1d(EMBED_DIM, hidden, kernel_size=3)
        self.norm1 = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.head_mid = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, 1)
        self.feature_dims = [EMBED_DIM, hidden]
        self.resolved_params = {"hidden": hidden, "dropout": dropout, "train_embedding": self.train_embedding,
                                "plan": self.embedding.plan, "n_fft": self.embedding.n_fft,
                                "hop": self.embedding.hop, "embed_mels": self.embedding.n_mels}

    def train(self, mode: bool = True) -> SpeechEmbeddingTeacher:
        super().train(mode)
        if not self.train_embedding:
            self.embedding.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() == 3:
            x = x[:, 0]
        if x.dim() != 2:
            raise ValueError(f"expected (batch, 1, samples), got {tuple(x.shape)}")
        if self.train_embedding:
            e = self.embedding(x)
        else:
            with torch.no_grad():
                e = self.embedding(x)
        if e.shape[-1] < 3:
            raise ValueError("speech_embedding: a window needs at least 3 embeddings (0.94 s of audio)")
        h = self.head_in(e).transpose(1, 2)  # (B, W-2, hidden)
        h = self.drop(F.relu(self.norm1(h)))
        h = F.relu(self.norm2(self.head_mid(h)))  # (B, W-2, hidden)
        logits = self.classifier(h).squeeze(-1).amax(dim=1)  # the best-placed 1 s span
        return logits, [e, h.transpose(1, 2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]
