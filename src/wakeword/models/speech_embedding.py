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

The mel model's 80 dB floor (max - 80 dB) is taken per embedding's 76 frames, so an embedding depends
only on the audio it covers: a whole track's embeddings, a window's and a stream's (one embedding per
80 ms, as openWakeWord runs it) are the same numbers. That makes scoring a track (``score_track``) and
streaming (``stream_step``) exact and about three times cheaper than scoring every 1 s window apart.
"""
from __future__ import annotations

import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000  # Hz; the embedding was trained at 16 kHz (a property of the pretrained model, not ours)
EMBED_FRAMES = 76  # mel frames per embedding (775 ms)
EMBED_STEP = 8  # mel frames between embeddings (80 ms)
EMBED_DIM = 96
TOP_DB = 80.0  # the mel model clips at (max - 80 dB)
INT16 = 32767.0  # the ONNX front end reads 16-bit PCM values as float

KNOWN = {"onnx_dir", "hidden", "dropout", "train_embedding", "context", "plan", "n_fft", "hop", "embed_mels",
         "n_mels"}
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

    def _load_from_state_dict(self, *args, **kwargs):
        _ORT_SESSIONS.pop(self, None)  # new weights: the next call exports them again
        super()._load_from_state_dict(*args, **kwargs)

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

    def melspectrogram(self, audio: torch.Tensor, floor: bool = True) -> torch.Tensor:
        """(batch, samples) -> (batch, frames, n_mels), openWakeWord's scaling (dB / 10 + 2).

        floor: apply the 80 dB floor over everything given, as the ONNX mel model does on one call."""
        x = (audio * INT16).unsqueeze(1)
        power = F.conv1d(x, self.stft_real, stride=self.hop) ** 2 + F.conv1d(x, self.stft_imag, stride=self.hop) ** 2
        db = 10.0 * torch.log10(torch.matmul(power.transpose(1, 2), self.mel).clamp(min=1e-10))
        if floor:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - TOP_DB)
        return db / 10.0 + 2.0

    def embed_frames(self, win: torch.Tensor) -> torch.Tensor:
        """win: (n, 76, 32) unfloored mel frames -> (n, 96): the floor per embedding, then the network.

        A frozen embedding on the CPU runs through onnxruntime (the same weights, exported from this module
        on first use): faster than torch for this stack of small convolutions (0.44 vs 1.2 s for 192 embeddings
        on this project's 2-core machine, one measurement), which is most of the cost of training the head and
        of scoring audio."""
        fast = self._ort_embed(win)
        if fast is not None:
            return fast
        return self._embed_torch(win)

    def _embed_torch(self, win: torch.Tensor) -> torch.Tensor:
        win = torch.maximum(win, win.amax(dim=(1, 2), keepdim=True) - TOP_DB / 10.0)
        return self.net(win.unsqueeze(1)).flatten(1)

    def _ort_embed(self, win: torch.Tensor) -> torch.Tensor | None:
        # only for frozen weights: a session is a snapshot of them (a trainable embedding always runs in torch);
        # and not when hooks watch the torch layers (MAC counting, feature capture): they must see them run
        if (win.device.type != "cpu" or torch.jit.is_tracing() or win.dtype != torch.float32
                or any(p.requires_grad for p in self.parameters())
                or any(m._forward_hooks or m._forward_pre_hooks for m in self.net)):
            return None
        session = _ORT_SESSIONS.get(self)
        if session is None:
            session = _ORT_SESSIONS[self] = _ort_session(self)
            if session is None:
                return None
        out = session.run(None, {"frames": win.detach().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = self.melspectrogram(audio, floor=False)  # (B, T, 32)
        if mel.shape[1] < EMBED_FRAMES:
            raise ValueError(f"speech_embedding needs at least {EMBED_FRAMES} mel frames "
                             f"({((EMBED_FRAMES - 1) * self.hop + self.n_fft) / SAMPLE_RATE:.3f} s of audio)")
        win = mel.unfold(1, EMBED_FRAMES, EMBED_STEP)  # (B, W, 32, 76)
        b, w = win.shape[:2]
        e = self.embed_frames(win.transpose(2, 3).reshape(b * w, EMBED_FRAMES, self.n_mels))  # (B*W, 96)
        return e.reshape(b, w, -1).transpose(1, 2)


# onnxruntime sessions of frozen embeddings, by module (weak keys: a module deep-copied or freed drops its own)
_ORT_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Frames(nn.Module):
    def __init__(self, emb: SpeechEmbedding):
        super().__init__()
        self.emb = emb

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.emb._embed_torch(frames)


def _ort_session(emb: SpeechEmbedding):
    """An onnxruntime session computing ``emb``'s embeddings from mel frames, or None without onnxruntime."""
    import io
    import warnings

    try:
        import onnxruntime as ort
    except ImportError:
        return None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Frames(emb).eval(), (torch.zeros(2, EMBED_FRAMES, emb.n_mels),), buf,
                          input_names=["frames"], output_names=["embedding"], dynamic_axes={"frames": {0: "n"}},
                          opset_version=18, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


class SpeechEmbeddingTeacher(nn.Module):
    """Teacher backbone on raw audio: the frozen pretrained embedding plus a trainable head.

    forward_features(audio: (batch, 1, samples)) -> (logits (batch,), [embeddings (batch, 96, frames),
    head features (batch, hidden, frames - 2)]), frames every 80 ms.

    Parameters (a dict, stored in checkpoints): ``onnx_dir`` (folder with openWakeWord's
    melspectrogram.onnx and embedding_model.onnx; default: the installed openwakeword package),
    ``hidden`` (head width, 128), ``dropout`` (0.3), ``train_embedding`` (fine-tune the embedding too;
    default false: it is what carries real speech, and synthetic clips would pull it toward TTS), ``context``
    (embeddings the head reads at once: 3 = a 1 s window, as before; 16 = 1.98 s, what openWakeWord's heads
    read: room for a whole phrase and what came just before it).
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
        self.context = int(params.get("context", HEAD_SPAN))
        if self.context < 1:
            raise ValueError("speech_embedding: context must be >= 1 embedding")
        # `context` consecutive embeddings -> hidden: the order of the 80 ms steps matters.
        self.head_in = nn.Conv1d(EMBED_DIM, hidden, kernel_size=self.context)
        self.norm1 = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.head_mid = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, 1)
        self.feature_dims = [EMBED_DIM, hidden]
        self.resolved_params = {"hidden": hidden, "dropout": dropout, "train_embedding": self.train_embedding,
                                "context": self.context,
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
        logits, h = self.head_logits(e)
        return logits, [e, h.transpose(1, 2)]

    def head_logits(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embeddings (B, 96, W >= context) -> (logits (B,) of the best-placed span, head features
        (B, W - context + 1, hidden)). Training from cached embeddings enters here."""
        if e.shape[-1] < self.context:
            raise ValueError(f"speech_embedding: a window needs at least {self.context} embeddings "
                             f"({window_seconds(self.context):.2f} s of audio)")
        h = self._head(e)
        return self.classifier(h).squeeze(-1).amax(dim=1), h

    @property
    def embedding_frozen(self) -> bool:
        """True when the embedding's output depends on nothing trainable (it can be computed once and cached)."""
        return not self.train_embedding

    def _head(self, e: torch.Tensor) -> torch.Tensor:
        """embeddings (B, 96, W) -> head features (B, W - context + 1, hidden), one per span of context."""
        h = self.head_in(e).transpose(1, 2)
        h = self.drop(F.relu(self.norm1(h)))
        return F.relu(self.norm2(self.head_mid(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    @torch.no_grad()
    def score_track(self, audio: torch.Tensor, window: int, stride: int, batch_size: int = 512) -> torch.Tensor | None:
        """Logits of every window of a track, each embedding computed once.

        audio: (samples,); window, stride: the windows' span and spacing in samples (WakeWordModel's). Equals
        scoring each window on its own when a window holds exactly 3 embeddings and windows lie one
        embedding step apart; returns None for any other geometry (the caller then scores window by window).
        """
        step = EMBED_STEP * self.embedding.hop
        frames = 1 + (window - self.embedding.n_fft) // self.embedding.hop
        if stride != step or 1 + (frames - EMBED_FRAMES) // EMBED_STEP != self.context:
            return None
        n = 1 + (audio.shape[-1] - window) // stride
        e = self.track_embeddings(audio, batch_size)
        return self.head_track(e[: n + self.context - 1].T)

    def track_embeddings(self, audio: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """audio (samples,) -> its embeddings (E, 96), one every 80 ms (the first covers samples 0-12400)."""
        mel = self.embedding.melspectrogram(audio[None], floor=False)[0]  # (T, 32)
        wins = mel.unfold(0, EMBED_FRAMES, EMBED_STEP).transpose(1, 2)  # (E, 76, 32), a view
        return torch.cat([self.embedding.embed_frames(wins[i:i + batch_size]) for i in range(0, len(wins), batch_size)])

    def head_track(self, e: torch.Tensor) -> torch.Tensor:
        """A track's embeddings (96, E) -> logits (E - context + 1,): one per span of ``context`` embeddings."""
        return self.classifier(self._head(e[None]))[0, :, 0]

    def stream_step(self) -> tuple[nn.Module, dict, tuple[torch.Tensor, ...]]:
        """The streaming graph for ONNX export: (module, contract, example inputs). See ``_StreamStep``."""
        step = _StreamStep(self)
        return step, step.contract(), step.example()


HEAD_SPAN = 3  # default embeddings the head reads at once (checkpoints without `context`): a 1 s window


def window_seconds(context: int, n_fft: int = 400, hop: int = 160) -> float:
    """The classifier window (s) of the project's front end (n_fft, hop) that holds exactly ``context``
    embeddings (at least 1 s, the window of every earlier speech-embedding model)."""
    frames = EMBED_FRAMES + EMBED_STEP * (context - 1)  # embedding mel frames (n_fft 512) the window must give
    return max(1.0, (n_fft + hop * frames) / SAMPLE_RATE)


class _StreamStep(nn.Module):
    """One streaming call: 80 ms of new audio + caches -> the score of the newest 1 s span + new caches.

    Runs as openWakeWord does: 8 new mel frames and one new embedding per call, the head over the last 3
    embeddings. The sample cache holds ``n_fft - hop`` samples plus 4 frames' worth more, which puts each
    call's newest 76 frames on the same 8-frame grid as a track's embeddings (76 = 9 x 8 + 4); the 4 frames
    computed twice cost little next to the embedding. Contract (``contract()``): the host puts the first
    ``sample_cache`` samples of the stream into the sample cache and zeros into the other caches, feeds
    ``chunk`` samples per call and ignores the first ``warmup_calls`` scores; score i after that equals
    ``score_track``'s window ``i + first_window`` (window 0 would read 4 frames no call computes).
    """

    def __init__(self, teacher: SpeechEmbeddingTeacher):
        super().__init__()
        self.teacher = teacher
        emb = teacher.embedding
        self.hop, self.n_fft, self.n_mels = emb.hop, emb.n_fft, emb.n_mels
        self.offset = EMBED_FRAMES % EMBED_STEP  # 4 frames: see the class docstring (the caches assume > 0)
        self.n_samples = self.n_fft - self.hop + self.offset * self.hop

    def contract(self) -> dict:
        return {"sample_cache": self.n_samples, "chunk": EMBED_STEP * self.hop, "stride": EMBED_STEP,
                # call j's newest embedding is track embedding j - 9; embedding 0 would need the 4 frames
                # no call computes, so the first full score (embeddings 1-3) comes from call 12
                "warmup_calls": (EMBED_FRAMES - self.offset) // EMBED_STEP + self.teacher.context - 1,
                "first_window": 1,
                "caches": {"feature_cache": [1, EMBED_FRAMES - EMBED_STEP, self.n_mels],
                           "embedding_cache": [1, EMBED_DIM, self.teacher.context - 1]},
                "n_mels": self.n_mels, "sample_rate": SAMPLE_RATE}

    def example(self) -> tuple[torch.Tensor, ...]:
        c = self.contract()
        return (torch.zeros(1, c["chunk"]), torch.zeros(1, c["sample_cache"]),
                *(torch.zeros(*shape) for shape in c["caches"].values()))

    def forward(self, audio: torch.Tensor, sample_cache: torch.Tensor, feature_cache: torch.Tensor,
                embedding_cache: torch.Tensor):
        x = torch.cat([sample_cache, audio], dim=1)
        mel = self.teacher.embedding.melspectrogram(x, floor=False)[:, -EMBED_STEP:]  # (1, 8, 32): the new frames
        frames = torch.cat([feature_cache, mel], dim=1)  # (1, 76, 32)
        e = self.teacher.embedding.embed_frames(frames)  # (1, 96)
        embs = torch.cat([embedding_cache, e[:, :, None]], dim=2)  # (1, 96, context)
        score = torch.sigmoid(self.teacher.classifier(self.teacher._head(embs))[:, 0, 0])
        return score, x[:, -self.n_samples:], frames[:, EMBED_STEP:], embs[:, :, 1:]
