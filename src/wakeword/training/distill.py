"""Dual-teacher distillation as a loss inside the one ``fit()`` loop.

loss = BCE(student, labels)
     + kd_weight      * sum_k w_ik * T^2 * BCE(z_s / T, sigmoid(z_k / T))          (soft labels)
     + feature_weight * mean over (stage, layer) pairs of match(adapter(student stage), teacher layer)

Teachers run frozen under ``no_grad`` (autocast on GPU). With ``cache=True`` their logits and the
matched hidden layers are computed once for every (augmentation draw, clip) before training, and the
teachers are dropped from memory; the student then trains on those same fixed draws
(``TrainConfig.augment_draws``).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from wakeword.models.base import time_series
from wakeword.models.kws import WakeWordModel
from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint, safe_load
from wakeword.training.fit import Batch, TrainConfig, fit

logger = logging.getLogger(__name__)

CACHE_FRAMES = 32  # teacher features are cached at <= this many time steps per window


@dataclass(frozen=True)
class TeacherSpec:
    checkpoint: str  # a trained teacher checkpoint (`wakeword teacher train`)
    weight: float = 1.0  # relative weight of this teacher's soft labels (normalised over teachers)
    layers: tuple[int, ...] = ()  # teacher hidden layers matched to DistillConfig.student_stages, in
    #                               order; () spreads them evenly over the teacher's depth


@dataclass(frozen=True)
class DistillConfig:
    teachers: tuple[TeacherSpec, ...] = ()
    kd_weight: float = 1.0  # weight of the soft-label (KD) loss next to the hard-label loss (weight 1)
    weighting: str = "fixed"  # per-sample teacher weights: fixed | confidence | correctness
    temperature: dict = field(default_factory=lambda: {"policy": "constant", "t": 2.0})
    #   constant: {t}; linear / cosine: {start, end} annealed over training;
    #   adaptive: {min, max, signal: agreement | entropy, momentum}
    feature_weight: float = 0.5  # weight of intermediate feature matching (0: off)
    feature_loss: str = "mse"  # mse (on layer-normalised features) | cosine | relational
    student_stages: tuple[int, ...] = (1, 3)  # student stages (0-based) matched to teacher layers
    cache: bool = False  # precompute teacher outputs for fixed augmentation draws; teachers leave memory
    amp: bool = True  # teachers in bfloat16 autocast on GPU

    # (low, high, low included); checked with the types on load: wakeword.validation
    LIMITS: ClassVar[dict[str, tuple]] = {"kd_weight": (0, None, True), "feature_weight": (0, None, True)}

    @classmethod
    def from_dict(cls, d: dict) -> DistillConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown distill config keys: {sorted(unknown)}; known: {sorted(known)}")
        from wakeword.validation import ConfigError, check_config, yaml_numbers

        d = yaml_numbers(cls, d)
        problems = check_config(cls, d, "distill")
        if problems:
            raise ConfigError("distill config", problems)
        d = dict(d)
        teachers = []
        for t in d.get("teachers", ()):
            t = {"checkpoint": t} if isinstance(t, str) else dict(t)
            t["layers"] = tuple(t.get("layers", ()))
            teachers.append(TeacherSpec(**t))
        d["teachers"] = tuple(teachers)
        if "student_stages" in d:
            d["student_stages"] = tuple(d["student_stages"])
        cfg = cls(**d)
        cfg.check()
        return cfg

    def check(self) -> None:
        if not self.teachers:
            raise ValueError("distillation needs at least one teacher checkpoint")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown teacher weighting '{self.weighting}'; known: {sorted(WEIGHTINGS)}")
        if self.feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"unknown feature loss '{self.feature_loss}'; known: {sorted(FEATURE_LOSSES)}")
        make_temperature(self.temperature)
        for t in self.teachers:
            if t.layers and len(t.layers) != len(self.student_stages):
                raise ValueError(f"teacher {t.checkpoint}: {len(t.layers)} layers for "
                                 f"{len(self.student_stages)} student stages")

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ temperature policies
class ConstantT:
    def __init__(self, t: float = 2.0):
        if t <= 0:
            raise ValueError("temperature must be > 0")
        self.t = float(t)

    def __call__(self, progress: float, signal: float) -> float:
        return self.t


class LinearT:
    """From ``start`` to ``end`` linearly over training (progress 0 -> 1)."""

    def __init__(self, start: float = 4.0, end: float = 1.0):
        if min(start, end) <= 0:
            raise ValueError("temperatures must be > 0")
        self.start, self.end = float(start), float(end)

    def __call__(self, progress: float, signal: float) -> float:
        return self.start + (self.end - self.start) * progress


class CosineT(LinearT):
    """From ``start`` to ``end`` along a half cosine: slow at both ends."""

    def __call__(self, progress: float, signal: float) -> float:
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * progress))


class AdaptiveT:
    """T = min + (max - min) * s, with s in [0, 1] a running average of a batch signal.

    signal "agreement": 1 - mean |p_student - p_teacher|. While the student disagrees with its
    teachers, a low T makes it copy their decisions; once it agrees, a higher T passes on the finer
    ranking in their soft scores. signal "entropy": 1 - mean binary entropy of the teachers (bits).
    Confident (low-entropy) teachers give near-hard labels, so T rises to soften them.
    """

    def __init__(self, min: float = 1.0, max: float = 4.0, signal: str = "agreement", momentum: float = 0.9):
        if not 0 < min <= max:
            raise ValueError("adaptive temperature needs 0 < min <= max")
        if signal not in ("agreement", "entropy"):
            raise ValueError(f"unknown adaptive signal '{signal}'; known: agreement, entropy")
        self.lo, self.hi, self.signal, self.momentum = float(min), float(max), signal, float(momentum)

    def __call__(self, progress: float, signal: float) -> float:
        return self.lo + (self.hi - self.lo) * signal


TEMPERATURES = {"constant": ConstantT, "linear": LinearT, "cosine": CosineT, "adaptive": AdaptiveT}


def make_temperature(spec: dict):
    spec = dict(spec)
    policy = spec.pop("policy", "constant")
    if policy not in TEMPERATURES:
        raise ValueError(f"unknown temperature policy '{policy}'; known: {sorted(TEMPERATURES)}")
    try:
        return TEMPERATURES[policy](**spec)
    except TypeError as exc:
        raise ValueError(f"bad parameters for temperature policy '{policy}': {exc}") from exc


# ------------------------------------------------------------------ losses
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """Per-sample temperature-scaled KD for one binary output: T^2 * BCE(z_s/T, sigmoid(z_t/T)). (B,)"""
    target = torch.sigmoid(teacher_logits / t)
    return F.binary_cross_entropy_with_logits(student_logits / t, target, reduction="none") * t * t


def _fixed(probs: torch.Tensor, labels: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    return base.expand_as(probs)


def _confidence(probs: torch.Tensor, labels: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    return base * (2 * probs - 1).abs()


def _correctness(probs: torch.Tensor, labels: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    return base * torch.where(labels[:, None] > 0.5, probs, 1 - probs)


# probs, labels: (B, K), (B,) -> unnormalised weights (B, K); base: (K,) the fixed teacher weights
WEIGHTINGS = {"fixed": _fixed, "confidence": _confidence, "correctness": _correctness}


def teacher_weights(kind: str, probs: torch.Tensor, labels: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Per-sample teacher weights (B, K) summing to 1 over teachers."""
    w = WEIGHTINGS[kind](probs, labels, base) + 1e-6
    return w / w.sum(dim=1, keepdim=True)


def _mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # Layer norm over channels at each time step: scale-free, so no teacher layer dominates.
    return F.mse_loss(F.layer_norm(s.transpose(1, 2), s.shape[1:2]), F.layer_norm(t.transpose(1, 2), t.shape[1:2]))


def _cosine(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(s, t, dim=1)).mean()


def _relational(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # Similarity-preserving KD (Tung & Mori 2019): match the batch's sample-by-sample similarity matrix.
    gs = F.normalize(s.flatten(1), dim=1)
    gt = F.normalize(t.flatten(1), dim=1)
    return F.mse_loss(gs @ gs.T, gt @ gt.T)


# student (B, C_t, T), teacher (B, C_t, T) -> scalar
FEATURE_LOSSES = {"mse": _mse, "cosine": _cosine, "relational": _relational}


def align_time(x: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, C, T) -> (B, C, steps) by linear interpolation along time."""
    if x.shape[-1] == steps:
        return x
    return F.interpolate(x.float(), size=steps, mode="linear", align_corners=False)


def spread_layers(n_layers: int, stages: tuple[int, ...], n_stages: int) -> tuple[int, ...]:
    """Teacher layers at the same relative depth as the student stages."""
    return tuple(min(n_layers - 1, max(0, round((s + 1) / n_stages * n_layers) - 1)) for s in stages)


# ------------------------------------------------------------------ the loss term
def reads_longer_windows(model: WakeWordModel) -> bool:
    """True for a teacher that scores any window at least as long as its own by its best-placed span (the
    speech-embedding head: embeddings every 80 ms, the head over every span of ``context``, the max logit)."""
    return hasattr(model.backbone, "head_logits")


def check_windows(teacher: _Teacher, student_feat) -> None:
    """The teacher must hear what the student hears: the same window, or - for a teacher that reads longer
    windows (``reads_longer_windows``) - a shorter one, so it scores the student's whole window (say the 1.0 s
    speech-embedding detector teaching the 1.37 s microWakeWord student: its soft label is its best score for any
    span of 3 embeddings, 80 ms apart, inside the student's window, which is what it would have fired on in a stream)."""
    tw, sw = teacher.feat.window_samples, student_feat.window_samples
    same_rate = teacher.feat.sample_rate == student_feat.sample_rate
    if same_rate and (tw == sw or (tw < sw and teacher.longer_ok)):
        return
    hint = ("" if not same_rate or tw > sw else
            f"; a {teacher.arch} teacher scores fixed windows only (a speech_embedding teacher may be shorter)")
    raise ValueError(f"teacher {teacher.path} scores {teacher.feat.window_s:.3f} s windows at {teacher.feat.sample_rate} "
                     f"Hz; the student {student_feat.window_s:.3f} s at {student_feat.sample_rate} Hz{hint}")


class _Teacher:
    """A frozen teacher and what distillation needs to know about it (not an nn.Module on purpose: its
    weights are neither optimised nor saved with the student)."""

    def __init__(self, spec: TeacherSpec, student_stages: tuple[int, ...], n_student_stages: int):
        ckpt = load_checkpoint(spec.checkpoint)
        metrics = ckpt.get("metrics") or {}
        if "val_pauc" not in metrics:
            raise ValueError(f"teacher {spec.checkpoint} was never trained (its checkpoint has no validation "
                             "metrics); train it with `wakeword teacher train` first")
        self.path = spec.checkpoint
        self.model: WakeWordModel | None = model_from_checkpoint(ckpt)
        self.model.requires_grad_(False)
        self.arch = self.model.arch
        self.val_pauc = float(metrics["val_pauc"])
        self.feat = self.model.feat
        self.longer_ok = reads_longer_windows(self.model)
        dims = self.model.backbone.feature_dims
        self.layers = spec.layers or spread_layers(len(dims), student_stages, n_student_stages)
        for layer in self.layers:
            if not 0 <= layer < len(dims):
                raise ValueError(f"teacher {spec.checkpoint} has {len(dims)} layers; layer {layer} does not exist")
        self.dims = [dims[layer] for layer in self.layers]
        self.weight = spec.weight

    @torch.no_grad()
    def run(self, audio: torch.Tensor, amp: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio (B, samples) -> logits (B,) float32, matched layers [(B, C, T)] float32."""
        assert self.model is not None
        self.model.eval()
        use_amp = amp and audio.device.type == "cuda"
        with torch.autocast(device_type=audio.device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits, feats = self.model.backbone.forward_features(self.model.frontend(audio))
        return logits.float(), [time_series(feats[i]).float() for i in self.layers]


class DistillLoss(nn.Module):
    """The distillation loss term for ``fit``; its submodules are the learnable feature adapters."""

    def __init__(self, cfg: DistillConfig, student_dims: list[int], augment_draws: int = 0):
        super().__init__()
        self.draws = augment_draws
        cfg.check()
        self.cfg = cfg
        n = len(student_dims)
        for s in cfg.student_stages:
            if not 0 <= s < n:
                raise ValueError(f"student stage {s} does not exist (the student has {n} stages)")
        self.teachers = [_Teacher(spec, cfg.student_stages, n) for spec in cfg.teachers]
        self.temperature = make_temperature(cfg.temperature)
        # One 1x1 conv per (teacher, matched pair): student stage channels -> teacher layer channels.
        self.adapters = nn.ModuleList(
            nn.ModuleList(nn.Conv1d(student_dims[s], d, 1) for s, d in zip(cfg.student_stages, t.dims))
            for t in self.teachers)
        self.register_buffer("signal", torch.tensor(0.5))  # running adaptive-temperature signal
        self.register_buffer("base_weights", torch.tensor([t.weight for t in self.teachers], dtype=torch.float32))
        self._cache: dict | None = None

    def teacher_report(self) -> list[dict]:
        return [{"checkpoint": t.path, "arch": t.arch, "val_pauc": t.val_pauc, "layers": list(t.layers)}
                for t in self.teachers]

    def prepare(self, ds, device: torch.device, run_dir: Path, progress: bool = True) -> None:
        for t in self.teachers:
            check_windows(t, ds.feat)
        if not self.cfg.cache:
            for t in self.teachers:
                assert t.model is not None
                t.model.to(device)
            return
        draws = self.draws
        if draws <= 0:
            raise ValueError("cache=True needs train.augment_draws > 0 (the fixed draws the cache holds)")
        path = Path(run_dir) / "teacher_cache.pt"
        key = {"teachers": [t.path for t in self.teachers], "layers": [list(t.layers) for t in self.teachers],
               "draws": draws, "n": len(ds), "seed": ds.seed}
        if path.exists():
            try:
                cached = safe_load(path)
            except ValueError:  # not plain data: recompute rather than unpickle it
                cached = {}
            if cached.get("key") == key:
                self._cache = cached
        if self._cache is None:
            self._cache = self._compute_cache(ds, draws, device, progress)
            self._cache["key"] = key
            tmp = path.with_suffix(".tmp")
            torch.save(self._cache, tmp)
            tmp.replace(path)
        for t in self.teachers:  # the point of the cache: teachers need not stay in memory
            t.model = None
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def _compute_cache(self, ds, draws: int, device: torch.device, progress: bool, batch: int = 64) -> dict:
        n = len(ds)
        logits = torch.zeros(len(self.teachers), draws, n)
        feats: list[list[torch.Tensor | None]] = [[None] * len(t.layers) for t in self.teachers]
        for t in self.teachers:
            assert t.model is not None
            t.model.to(device)
        bar = tqdm(total=draws * n, desc="teacher cache", disable=not progress, leave=False)
        for d in range(draws):
            ds.set_epoch(d)
            for start in range(0, n, batch):
                idx = range(start, min(n, start + batch))
                audio = torch.stack([ds[i][0] for i in idx]).to(device)
                for k, t in enumerate(self.teachers):
                    z, fs = t.run(audio, self.cfg.amp)
                    logits[k, d, idx.start:idx.stop] = z.cpu()
                    for j, f in enumerate(fs):
                        f = align_time(f, min(CACHE_FRAMES, f.shape[-1])).half().cpu()
                        if feats[k][j] is None:
                            feats[k][j] = torch.zeros(draws, n, *f.shape[1:], dtype=torch.float16)
                        feats[k][j][d, idx.start:idx.stop] = f  # type: ignore[index]
                bar.update(len(idx))
        bar.close()
        return {"logits": logits, "feats": feats}

    def _teacher_outputs(self, batch: Batch) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """-> logits (B, K), features per teacher per pair [(B, C, T)]."""
        if self._cache is None:
            outs = [t.run(batch.audio, self.cfg.amp) for t in self.teachers]
            return torch.stack([o[0] for o in outs], dim=1), [o[1] for o in outs]
        draw, idx = batch.keys[:, 0], batch.keys[:, 1]
        dev = batch.logits.device
        logits = self._cache["logits"][:, draw, idx].T.to(dev)
        feats = [[f[draw, idx].float().to(dev) for f in per_t] for per_t in self._cache["feats"]]
        return logits, feats

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        z_t, t_feats = self._teacher_outputs(batch)  # (B, K)
        z_s = batch.logits
        p_t = torch.sigmoid(z_t)
        # Adaptive-temperature signal: a running mean so one odd batch does not jolt T.
        if isinstance(self.temperature, AdaptiveT):
            with torch.no_grad():
                if self.temperature.signal == "agreement":
                    s = 1 - (torch.sigmoid(z_s)[:, None] - p_t).abs().mean()
                else:
                    p = p_t.clamp(1e-6, 1 - 1e-6)
                    s = 1 + (p * p.log2() + (1 - p) * (1 - p).log2()).mean()
                m = self.temperature.momentum
                self.signal.mul_(m).add_((1 - m) * s)
        progress = batch.step / max(1, batch.total_steps - 1)
        temp = self.temperature(progress, float(self.signal))
        w = teacher_weights(cfg.weighting, p_t, batch.labels, self.base_weights.to(z_s.device))  # (B, K)
        per_teacher = torch.stack([kd_loss(z_s, z_t[:, k], temp) for k in range(z_t.shape[1])], dim=1)
        kd = (w * per_teacher).sum(dim=1).mean()
        loss = cfg.kd_weight * kd
        logs = {"temperature": temp, "loss_kd": kd.item()}
        for k, t in enumerate(self.teachers):
            logs[f"loss_kd_{k}_{t.arch}"] = per_teacher[:, k].mean().item()
            logs[f"weight_{k}_{t.arch}"] = w[:, k].mean().item()
        if cfg.feature_weight > 0:
            match = FEATURE_LOSSES[cfg.feature_loss]
            fm_terms = []
            for k, t in enumerate(self.teachers):
                for j, s in enumerate(cfg.student_stages):
                    student = time_series(batch.feats[s])  # (B, C_s, T_s)
                    projected = self.adapters[k][j](student)
                    target = align_time(t_feats[k][j], student.shape[-1])
                    fm_terms.append(match(projected, target))
            fm = torch.stack(fm_terms).mean()
            loss = loss + cfg.feature_weight * fm
            logs["loss_fm"] = fm.item()
        return loss, logs


# What `wakeword teacher train` starts from for each kind (flags and YAML override it).
TEACHER_DEFAULTS: dict[str, dict] = {
    "conformer": {"lr": 1e-3, "model": {"preset": "small"}},
    "wav2vec2": {"lr": 5e-4, "model": {"preset": "small"}},
    # only the head trains (the embedding is frozen): a higher rate
    "speech_embedding": {"lr": 1e-3, "model": {}},
}


def teacher_config(kind: str, overrides: dict) -> TrainConfig:
    """The TrainConfig of a teacher run: the kind's defaults, then ``overrides`` (model keys merged)."""
    if kind not in TEACHER_DEFAULTS:
        raise ValueError(f"unknown teacher kind '{kind}'; known: {sorted(TEACHER_DEFAULTS)}")
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TEACHER_DEFAULTS[kind].items()}
    for k, v in overrides.items():
        if k == "model":
            d["model"] = {**d["model"], **v}
        else:
            d[k] = v
    d["arch"] = kind
    return TrainConfig.from_dict(d)


def distill(train_cfg: TrainConfig, distill_cfg: DistillConfig, data_dir: str | Path, run_dir: str | Path,
            resume: bool = True, progress: bool = True) -> dict:
    """Train the student with ``fit`` plus the distillation loss; the result is an ordinary checkpoint.

    Writes distill_report.json (each teacher's own val pAUC next to the student's).
    """
    from wakeword.models.registry import build_model

    if train_cfg.init_from:
        student_dims = model_from_checkpoint(load_checkpoint(train_cfg.init_from)).backbone.feature_dims
    else:
        feat = train_cfg.feature_config()
        student = build_model(train_cfg.arch, {**train_cfg.model, "n_mels": feat.n_mels})
        if getattr(student, "input_kind", "mel") != "mel":
            raise ValueError("the distilled student must be a log-mel model (e.g. mobilenetv3)")
        student_dims = student.feature_dims
    term = DistillLoss(distill_cfg, student_dims, train_cfg.augment_draws)
    summary = fit(train_cfg, data_dir, run_dir, resume=resume, progress=progress, loss_terms=(term,),
                  extra_modules=(term,), extra_config={"distill": distill_cfg.to_dict()})
    report = {"teachers": term.teacher_report(), "student_val_pauc": summary["best"].get("val_pauc")}
    (Path(run_dir) / "distill_report.json").write_text(json.dumps(report, indent=2))
    summary["distill"] = report
    return summary
