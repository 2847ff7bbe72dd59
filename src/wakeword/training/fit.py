"""The one training loop. Distillation, mining and HPO plug in here (extra loss terms, init weights,
configs); there is no second trainer.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from wakeword.audio.io import SAMPLE_RATE
from wakeword.dataset.augment import AugmentConfig
from wakeword.dataset.manifest import BACKGROUND_KINDS, KINDS, ClipRow, read_manifest, select
from wakeword.dataset.torch_data import (
    TrainWindows,
    load_clips,
    load_dir_audio,
    pad_for_scoring,
    sample_weights,
)
from wakeword.defaults import MAX_FPR
from wakeword.evaluation.metrics import eer, pauc
from wakeword.features.logmel import FeatureConfig
from wakeword.features.specaugment import SpecAugment, SpecAugmentConfig
from wakeword.models.kws import WakeWordModel
from wakeword.models.mobilenetv3 import StudentConfig
from wakeword.training.checkpoint import load_checkpoint, model_from_checkpoint, safe_load, save_checkpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12  # passes of steps_per_epoch batches
    steps_per_epoch: int = 100  # optimizer steps per epoch (sampling is with replacement, class-balanced)
    batch_size: int = 64  # windows per step
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_frac: float = 0.05  # fraction of steps with linear warm-up before the cosine decay
    seed: int = 0  # seeds weights, sampling and every augmentation draw
    positive_fraction: float = 0.35  # share of positives among sampled windows
    adversarial_fraction: float = 0.3  # share of adversarial / hard negatives
    exclude_kinds: tuple[str, ...] = ()  # manifest kinds left out of training (e.g. ("music",) to ablate a
    #                                      data lever without rebuilding the data folder)
    val_only_kinds: tuple[str, ...] = ()  # manifest kinds never trained on: their train- and val-split clips join
    #                                       the validation set (test stays test), so the stream the threshold is
    #                                       calibrated on grows (e.g. ("sentence",): hours of natural sentences)
    background_kinds: tuple[str, ...] = BACKGROUND_KINDS  # training clips of these kinds are also mixed
    #                                      under other windows as background (at the augment SNR)
    max_fpr: float = MAX_FPR  # pAUC region used for best-checkpoint selection
    arch: str = "mobilenetv3"  # registered backbone
    model: dict = field(default_factory=dict)  # backbone parameters (StudentConfig fields)
    features: dict = field(default_factory=dict)  # FeatureConfig overrides
    augment: dict = field(default_factory=dict)  # AugmentConfig overrides
    specaugment: dict = field(default_factory=dict)  # SpecAugmentConfig overrides
    noise_dirs: tuple[str, ...] = ()  # extra background-noise folders (augmentation only)
    rir_dirs: tuple[str, ...] = ()  # room impulse responses to convolve with
    init_from: str = ""  # checkpoint to fine-tune from (its architecture and front end are kept)
    qat: bool = False  # quantization-aware fine-tuning: train through fake INT8 as the export quantizes
    #                    (training/qat.py); with init_from, a low lr, a few hundred steps; checkpoints stay float
    augment_draws: int = 0  # 0: a fresh augmentation draw every epoch; N: epochs cycle through N fixed
    #                         draws (epoch e reuses draw e % N), so teacher outputs can be cached
    num_workers: int = 1  # DataLoader worker processes (1: augmentation overlaps the step on a 2nd core)
    device: str = "auto"  # "auto", "cpu" or "cuda"
    threads: int = 1  # CPU threads for torch; small convnets train fastest on one (OpenMP barriers
    #                   spin when another process holds the second core: 30x slower measured)
    cache_draws: int = 0  # > 0 (backbones with a frozen embedding: speech_embedding): embed this many fixed
    #                       augmentation draws of every training window once (stored under <data>/cache/, reused by
    #                       every run with the same data, augmentation, seed and embedding), train the head on them
    cache_seed: int = 0  # seed of the cached augmentation draws (-1: the run's seed); shared by default, so runs
    #                      of every seed train on one cache (their seeds still set weights, sampling, dropout)
    exclude_engines: tuple[str, ...] = ()  # TTS engines whose clips are left out (e.g. ("kokoro",): the data
    #                                        lever measured without rebuilding the data folder)
    balance_engines: bool = False  # sample every TTS engine at the same share among positives and negatives (an
    #                               engine that speaks mostly one class is a shortcut: docs/RESULTS.md, issue #16)
    neg_weight: float = 1.0  # loss weight of negative windows (> 1 pushes false accepts down, at recall's cost)
    neg_weight_ramp: bool = False  # raise the negative weight linearly from 1 to neg_weight over the run
    focal_gamma: float = 0.0  # > 0: focal loss (down-weights windows the model already gets right)
    select: str = "pauc"  # checkpoint selection: "pauc" (clip pAUC on val) or "frr" (false-reject rate at
    #                       target_fa_per_hour on the validation negatives played as a continuous stream)
    target_fa_per_hour: float = 0.5  # the operating point "frr" selects at
    threshold_fa_per_hour: float = -1.0  # >= 0: the checkpoint's default threshold is the lowest whose false
    #                       accepts per hour on the validation stream stay within this; < 0: the lowest threshold
    #                       no validation negative clip reaches (earlier checkpoints)
    threshold_tail: bool = False  # with threshold_fa_per_hour: when the validation stream is too short to hold
    #                       that many false accepts (< 3 expected), extrapolate the threshold from its 20 highest
    #                       false-accept peaks (an exponential tail, metrics.tail_threshold) instead of "above its
    #                       highest peak", which a real stream exceeds several-fold (docs/RESULTS.md, issue #16)
    val_noisy: bool = False  # the validation stream also holds every negative again under validation noise
    #                          (5-20 dB SNR), and positives too: validation hears noisy rooms as well
    operating_exclude_kinds: tuple[str, ...] = ("adversarial", "hard_negative")  # negatives left out of the
    #                       stream that "frr" selection and threshold_fa_per_hour are measured on: a real stream
    #                       rarely holds near-phrases, and with them in, "0.5 FA/h" means "above every near-phrase"
    #                       (docs/RESULTS.md, issue #16); clip pAUC still sees them

    def to_dict(self) -> dict:
        return asdict(self)

    # (low, high, low included); checked with the types on load: wakeword.validation
    LIMITS: ClassVar[dict[str, tuple]] = {
        "epochs": (1, None, True), "steps_per_epoch": (1, None, True), "batch_size": (1, None, True),
        "lr": (0, None, False), "weight_decay": (0, None, True), "warmup_frac": (0, 1, True),
        "positive_fraction": (0, 1, False), "adversarial_fraction": (0, 1, True), "max_fpr": (0, 1, False),
        "augment_draws": (0, None, True), "num_workers": (0, None, True), "threads": (0, None, True),
        "cache_draws": (0, None, True), "neg_weight": (0, None, False), "focal_gamma": (0, None, True),
        "target_fa_per_hour": (0, None, False)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        from wakeword.validation import ConfigError, check_config, yaml_numbers

        d = yaml_numbers(cls, d)
        problems = check_config(cls, d, "train")
        if problems:
            raise ConfigError("train config", problems)
        d = {k: tuple(v) if k in ("noise_dirs", "rir_dirs", "exclude_kinds", "background_kinds", "exclude_engines",
                                  "val_only_kinds")
             else v
             for k, v in d.items()}
        return cls(**d)

    def __post_init__(self) -> None:
        from wakeword.validation import ConfigError, check_config

        problems = check_config(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, "train")
        sub = {"features": FeatureConfig, "specaugment": SpecAugmentConfig, "augment": AugmentConfig}
        if self.arch == "mobilenetv3":
            sub["model"] = StudentConfig
        for name, sub_cls in sub.items():
            if isinstance(getattr(self, name), dict):
                problems += check_config(sub_cls, getattr(self, name), f"train.{name}")
        if problems:
            raise ConfigError("train config", problems)

    def feature_config(self) -> FeatureConfig:
        if self.arch == "mixednet":  # its window and score stride follow from the network
            from wakeword.models.mixednet import mixednet_features

            return mixednet_features(self.model, self.features)
        if self.features.get("frontend") == "micro":  # the C front end fixes its frame parameters
            from wakeword.features.micro import MICRO_FEATURES

            return FeatureConfig(**{**self.features, **MICRO_FEATURES})
        return FeatureConfig(**self.features)


def drop_new_defaults(saved: dict, wanted: dict) -> dict:
    """``wanted`` (a TrainConfig as JSON) without the fields ``saved`` lacks that hold their default:
    a run made before a field existed is the same run as one with that field at its default."""
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    return {k: v for k, v in wanted.items() if k in saved or v != defaults.get(k)}


@dataclass
class Batch:
    """What a loss term sees of one training step."""

    audio: torch.Tensor  # (B, samples) augmented windows at 16 kHz
    labels: torch.Tensor  # (B,) float 0/1
    keys: torch.Tensor  # (B, 2) (augmentation draw, clip index): identifies each window exactly
    inputs: torch.Tensor  # front-end output before SpecAugment: (B, n_mels, frames) or (B, 1, samples)
    logits: torch.Tensor  # (B,) the model's logits (with grad)
    feats: list[torch.Tensor]  # the model's intermediate features (with grad)
    step: int  # optimizer steps done before this one
    total_steps: int  # optimizer steps of the whole run


class LossTerm(Protocol):
    """An extra loss inside the training step (distillation is one of these).

    Returns the loss to add and scalars to log (every step). A term may also define
    ``prepare(dataset, device, run_dir, progress)``, called once before the first step (e.g. to cache
    teacher outputs). Terms with state or trainable parameters are nn.Modules passed in
    ``extra_modules`` too, so they are optimised and checkpointed with the model.
    """

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # augmentation is numpy; keep the worker from competing for cores


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def window_loss(logits: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, step: int, total: int) -> torch.Tensor:
    """Binary cross-entropy per window, with the negative weight (optionally ramped) and focal modulation."""
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if cfg.focal_gamma > 0:
        p_true = torch.exp(-loss)  # the probability the model gives the true class
        loss = loss * (1 - p_true) ** cfg.focal_gamma
    w_neg = cfg.neg_weight
    if cfg.neg_weight_ramp:
        w_neg = 1.0 + (cfg.neg_weight - 1.0) * min(1.0, step / max(1, total))
    if w_neg != 1.0:
        loss = loss * torch.where(labels > 0.5, torch.ones_like(loss), torch.full_like(loss, w_neg))
    return loss.mean()


CALIBRATION_TARGETS = (0.5, 1.0, 2.0, 5.0, 10.0)  # FA/h on the validation stream: thresholds recorded per epoch


def stream_validation(scorer, rows: list[ClipRow], clips: list[np.ndarray], cfg: TrainConfig) -> dict[str, float]:
    """Validation through the evaluation protocol: positives padded with silence (clip max), negatives played as
    continuous streams; clip pAUC, FRR at ``target_fa_per_hour`` and the calibrated threshold."""
    from wakeword.evaluation import metrics
    from wakeword.evaluation.scoring import score_set

    pos = [(r.clip_id, c) for r, c in zip(rows, clips) if r.label == 1]
    neg = [(r.clip_id, c) for r, c in zip(rows, clips) if r.label == 0]
    sc = score_set(scorer, pos, neg, progress=False)
    excluded = {r.clip_id for r in rows if r.label == 0 and r.kind in cfg.operating_exclude_kinds}
    op_streams = sc.neg_streams  # the operating point's stream: the negatives a real stream holds
    if excluded:
        cut = (streams_without(sc, excluded, {r.clip_id: len(c) / SAMPLE_RATE for r, c in zip(rows, clips)})
               if len(excluded) < len(neg) else [])
        if cut:
            op_streams = cut
        else:
            logger.warning("no validation score hears only negatives outside %s: the operating point is measured "
                           "on every negative", cfg.operating_exclude_kinds)
    labels = np.r_[np.ones(len(sc.pos_scores)), np.zeros(len(sc.neg_clip_scores))]
    scores = np.r_[sc.pos_scores, sc.neg_clip_scores]
    p = pauc(labels, scores, cfg.max_fpr)
    e, _ = eer(labels, scores)
    op = metrics.frr_at_fa_per_hour(sc.pos_scores, op_streams, sc.hop_s, cfg.target_fa_per_hour)
    out = {"val_pauc": p.normalised, "val_pauc_mcclish": p.mcclish, "val_eer": e, "val_frr_at_target": op.frr,
           "val_fa_target": cfg.target_fa_per_hour,
           "val_stream_hours": sum(len(s) for s in op_streams) * sc.hop_s / 3600}
    for t in CALIBRATION_TARGETS:  # what other calibration targets would choose (the ablation compares them)
        op_t = metrics.frr_at_fa_per_hour(sc.pos_scores, op_streams, sc.hop_s, t)
        out[f"val_threshold_fa{t:g}"] = op_t.threshold
    if cfg.threshold_fa_per_hour >= 0:
        cal = metrics.frr_at_fa_per_hour(sc.pos_scores, op_streams, sc.hop_s, cfg.threshold_fa_per_hour)
        out.update({"val_threshold": cal.threshold, "val_frr_at_threshold": cal.frr,
                    "val_fa_per_hour_at_threshold": cal.fa_per_hour, "threshold_fa_per_hour": cfg.threshold_fa_per_hour})
        short = cfg.threshold_fa_per_hour * out["val_stream_hours"] < metrics.TAIL_MIN_EVENTS
        tail = (metrics.tail_threshold(op_streams, sc.hop_s, cfg.threshold_fa_per_hour)
                if cfg.threshold_tail and short and cfg.threshold_fa_per_hour > 0 else None)
        if tail is not None:
            pos = np.asarray(sc.pos_scores)
            out.update({"val_threshold_measured": cal.threshold, "val_threshold": tail.threshold,
                        "val_frr_at_threshold": float(np.mean(pos < tail.threshold)),
                        "val_fa_per_hour_at_threshold": metrics.false_accepts_per_hour(
                            op_streams, tail.threshold, sc.hop_s),
                        "val_tail_peaks": tail.peaks, "val_tail_scale": tail.scale,
                        "val_tail_base_fa_per_hour": tail.base_fa_per_hour})
    else:
        out.update(calibrated_threshold(labels, scores))
    return out


def streams_without(sc, excluded: set[str], lengths_s: dict[str, float]) -> list[np.ndarray]:
    """``sc``'s negative streams with every score whose audio overlaps an ``excluded`` clip cut out: the stream of
    the other negatives, in the contiguous pieces left, from the one scoring pass (the negatives are embedded once).

    sc: ``score_set``'s output (a score covers ``first_end_s`` seconds, one every ``hop_s``); excluded: clip ids;
    lengths_s: seconds of each clip by id."""
    cut: list[list[tuple[float, float]]] = [[] for _ in sc.neg_streams]
    for f, (k, t) in zip(sc.neg_files, sc.clip_places):
        if f in excluded:
            cut[k].append((t, t + lengths_s[f]))
    out = []
    for s, spans in zip(sc.neg_streams, cut):
        if not spans:
            out.append(s)
            continue
        start = np.arange(len(s)) * sc.hop_s  # each score hears [start, start + first_end_s)
        keep = np.ones(len(s), bool)
        for a, b in spans:
            keep &= ~((start < b) & (start + sc.first_end_s > a))
        edges = np.flatnonzero(np.diff(np.r_[0, keep.astype(np.int8), 0]))
        out.extend(s[a:b] for a, b in zip(edges[::2], edges[1::2]))
    return out


def noisy_copies(rows: list[ClipRow], clips: list[np.ndarray], noises: list[np.ndarray], seed: int
                 ) -> tuple[list[ClipRow], list[np.ndarray]]:
    """Every clip again under one of ``noises`` at 5-20 dB SNR (seeded per clip): the noisy half of validation."""
    from wakeword.audio.mixing import mix_at_snr

    out_rows, out_clips = [], []
    if not noises:
        return out_rows, out_clips
    for i, (r, c) in enumerate(zip(rows, clips)):
        if r.kind in BACKGROUND_KINDS:
            continue
        rng = np.random.default_rng([seed, 7919, i])
        noise = noises[int(rng.integers(len(noises)))]
        noise = np.tile(noise, int(np.ceil(len(c) / max(1, len(noise)))))[: len(c)]
        out_rows.append(replace(r, clip_id=r.clip_id + "+noise"))
        out_clips.append(mix_at_snr(c, noise, float(rng.uniform(5.0, 20.0))).astype(np.float32))
    return out_rows, out_clips


@torch.no_grad()
def score_clips(model: WakeWordModel, clips: list[np.ndarray], device: torch.device | str = "cpu") -> np.ndarray:
    """Clip-level scores: each clip padded with silence, scored window by window, max taken."""
    model.eval()
    out = np.empty(len(clips), dtype=np.float64)
    for i, clip in enumerate(clips):
        audio = torch.from_numpy(pad_for_scoring(clip, model.feat)).to(device)
        mel = model.frontend(audio[None])[0]
        out[i] = float(model.score_frames(mel).max())
    return out


def validate(model: WakeWordModel, rows: list[ClipRow], clips: list[np.ndarray], max_fpr: float,
             device: torch.device | str = "cpu") -> dict[str, float]:
    labels = np.array([r.label for r in rows])
    scores = np.asarray(score_clips(model, clips, device), np.float64)
    p = pauc(labels, scores, max_fpr)
    e, _ = eer(labels, scores)
    out = {"val_pauc": p.normalised, "val_pauc_mcclish": p.mcclish, "val_eer": e}
    out.update(calibrated_threshold(labels, scores))
    return out


def calibrated_threshold(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The default detection threshold a checkpoint carries: the lowest at which no validation negative clip
    fires (its highest score, nudged up), and the share of validation positives it misses.

    Why: a fixed 0.5 means very different false-alarm rates for different models (on the real development
    stream, 150-230 per hour for the models of docs/RESULTS.md); this puts every model at the high-precision
    end its own held-out data supports. It uses the validation split only, never evaluation audio.
    """
    neg, pos = scores[labels == 0], scores[labels == 1]
    if len(neg) == 0:
        return {}
    t = float(min(1.0, np.nextafter(np.float32(neg.max()), np.float32(2.0))))
    return {"val_threshold": t, "val_frr_at_threshold": float(np.mean(pos < t)) if len(pos) else float("nan")}


def selection_score(record: dict, cfg: TrainConfig) -> float:
    """What best.pt maximises: val pAUC, or (select "frr") fewest false rejects at the target FA/h, pAUC breaking
    ties."""
    if cfg.select == "frr":
        return (1.0 - record["val_frr_at_target"]) * 10.0 + record["val_pauc"]
    return record["val_pauc"]


class _TorchScorer:
    """``score_track`` of a model in torch (validation of models without a cached embedding)."""

    def __init__(self, model: WakeWordModel, device):
        self.model, self.feat, self.device = model, model.feat, device

    @torch.no_grad()
    def score_track(self, audio: np.ndarray) -> tuple[np.ndarray, float]:
        x = self.model.frontend(torch.from_numpy(np.ascontiguousarray(audio, np.float32)).to(self.device)[None])[0]
        return self.model.score_frames(x).cpu().numpy(), self.feat.score_hop_s


def fit(cfg: TrainConfig, data_dir: str | Path, run_dir: str | Path, resume: bool = True, progress: bool = True,
        loss_terms: tuple[LossTerm, ...] = (), extra_modules: tuple[nn.Module, ...] = (),
        extra_config: dict | None = None) -> dict:
    """Train a detector on ``data_dir``'s train split, select by val pAUC, write everything to ``run_dir``.

    Files: config.json (resolved), metrics.jsonl (per epoch), tb/ (TensorBoard), last.pt (resume
    state, every epoch), best.pt (best val pAUC). A killed run continues from last.pt.
    ``extra_modules`` hold trainable parameters of loss terms (e.g. feature adapters);
    ``extra_config`` (e.g. the distillation config) is stored next to the train config, and resuming
    with a different one is refused like a different train config.
    """
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"train": cfg.to_dict(), "data_dir": str(data_dir.resolve()), **(extra_config or {})}
    cfg_path = run_dir / "config.json"
    last_path = run_dir / "last.pt"
    if resume and last_path.exists() and cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        old.pop("data_dir", None)
        new = json.loads(json.dumps({k: v for k, v in resolved.items() if k != "data_dir"}))
        if "train" in old:
            new["train"] = drop_new_defaults(old["train"], new["train"])
        if old != new:
            raise ValueError(f"{run_dir} holds a run with a different config; choose another run folder "
                             "or remove it")
    cfg_path.write_text(json.dumps(resolved, indent=2))

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    rows = read_manifest(data_dir)
    if not rows:
        raise FileNotFoundError(f"no manifest in {data_dir}: run `wakeword data build` first")
    # Manifest order depends on which build job finished first: sort so sampling is reproducible.
    rows = sorted(rows, key=lambda r: r.clip_id)
    for name in ("exclude_kinds", "background_kinds", "val_only_kinds"):
        unknown = set(getattr(cfg, name)) - set(KINDS)
        if unknown:
            raise ValueError(f"{name}: unknown kinds {sorted(unknown)}; known: {list(KINDS)}")
    rows = [r for r in rows if r.kind not in cfg.exclude_kinds and r.engine not in cfg.exclude_engines]
    train_rows, val_rows = select(rows, "train"), select(rows, "val")
    if cfg.val_only_kinds:
        held = [r for r in train_rows if r.kind in cfg.val_only_kinds]
        if any(r.label == 1 for r in held):
            raise ValueError("val_only_kinds: positives are always trained on; name negative kinds only")
        train_rows = [r for r in train_rows if r.kind not in cfg.val_only_kinds]
        val_rows = val_rows + held
        if not held and not any(r.kind in cfg.val_only_kinds for r in val_rows):
            logger.warning("val_only_kinds %s: the data folder holds no such clips (for sentences: is Debian's "
                           "fortunes installed? `bash scripts/setup.sh`), so validation is the val split alone",
                           list(cfg.val_only_kinds))
    clip_counts = {"train_clips": len(train_rows), "val_clips": len(val_rows)}
    for name, rs in (("train", train_rows), ("val", val_rows)):
        if not any(r.label == 1 for r in rs) or not any(r.label == 0 for r in rs):
            raise ValueError(f"the {name} split needs both positive and negative clips")

    if cfg.select not in ("pauc", "frr"):
        raise ValueError(f"select must be 'pauc' or 'frr', got {cfg.select!r}")
    if cfg.threshold_tail and cfg.threshold_fa_per_hour <= 0:
        raise ValueError("threshold_tail extrapolates the threshold to threshold_fa_per_hour: set it (> 0), e.g. 0.5")
    if cfg.init_from:
        init = load_checkpoint(cfg.init_from)
        model = model_from_checkpoint(init)
        feat = model.feat
    else:
        feat = cfg.feature_config()
        if cfg.arch == "speech_embedding" and "window_s" not in cfg.features:
            from wakeword.models.speech_embedding import HEAD_SPAN, window_seconds

            # the window that holds exactly the head's context of embeddings
            feat = FeatureConfig(**{**cfg.features, "window_s": window_seconds(int(cfg.model.get("context", HEAD_SPAN)),
                                                                                feat.n_fft, feat.hop_length)})
        model = WakeWordModel(cfg.arch, asdict(StudentConfig(**cfg.model)) if cfg.arch == "mobilenetv3"
                              else cfg.model, feat)
    from wakeword.models.registry import count_macs, count_params

    size = {"params": count_params(model.backbone),
            "macs_per_window": count_macs(model.backbone, model.frontend(torch.zeros(1, feat.window_samples)))}
    logger.info("%s: %d parameters, %.2f M multiply-accumulates per %.1f s window", cfg.arch, size["params"],
                size["macs_per_window"] / 1e6, feat.window_s)
    model.to(device)
    logger.info("loading %d train and %d val clips", len(train_rows), len(val_rows))
    train_clips = load_clips(train_rows, data_dir, progress)
    val_clips = load_clips(val_rows, data_dir, progress)
    noises = [c for r, c in zip(train_rows, train_clips) if r.kind in cfg.background_kinds] + \
        load_dir_audio(cfg.noise_dirs)
    rirs = load_dir_audio(cfg.rir_dirs, max_seconds=2.0)
    ds = TrainWindows(train_rows, train_clips, feat, AugmentConfig.from_dict(cfg.augment), noises, rirs, cfg.seed)
    for term in loss_terms:
        if hasattr(term, "prepare"):
            term.prepare(ds, device, run_dir, progress)
    weights = sample_weights(train_rows, cfg.positive_fraction, cfg.adversarial_fraction)
    if cfg.balance_engines:
        from wakeword.dataset.torch_data import balance_engines

        weights = balance_engines(train_rows, weights)
    weights = torch.from_numpy(weights)
    cached = cfg.cache_draws > 0
    train_ds = ds
    scorer = None  # validation through cached embeddings (frozen-embedding backbones)
    # validation through the stream protocol: needed for FRR selection and for a threshold at a stated FA/h
    stream_val = cached or cfg.select == "frr" or cfg.threshold_fa_per_hour >= 0
    if stream_val:
        from wakeword.training.feature_cache import CachedWindows, EmbeddingTrackScorer, train_cache

        frozen = getattr(model.backbone, "embedding_frozen", False)
        if cached and not frozen:
            raise ValueError(f"cache_draws needs a backbone with a frozen embedding (speech_embedding), not {cfg.arch}")
        if cached and (loss_terms or cfg.qat):
            raise ValueError("cache_draws trains the head from cached embeddings: no distillation terms or QAT")
        if frozen:
            cache_root = data_dir / "cache"
            scorer = EmbeddingTrackScorer(model, cache_root / "tracks")
        if cached:
            seed = cfg.seed if cfg.cache_seed < 0 else cfg.cache_seed
            cds = ds if seed == cfg.seed else TrainWindows(train_rows, train_clips, feat, ds.aug, noises, rirs, seed)
            emb = train_cache(cds, model.backbone, cfg.cache_draws, cache_root, {"window": model.window_len},
                              progress=progress, num_workers=cfg.num_workers)
            train_ds = CachedWindows(emb, ds.labels, cfg.cache_draws)
            weights = weights.repeat(cfg.cache_draws) / cfg.cache_draws
    if cfg.val_noisy:
        v_noises = [c for r, c in zip(val_rows, val_clips) if r.kind in cfg.background_kinds]
        # seeded by the data, not the run: every run of a data folder validates on the same audio
        extra_rows, extra_clips = noisy_copies(val_rows, val_clips, v_noises, 0)
        val_rows, val_clips = val_rows + extra_rows, val_clips + extra_clips
    specaug = SpecAugment(SpecAugmentConfig(**cfg.specaugment))

    params = list(model.parameters()) + [p for m in extra_modules for p in m.parameters()]
    for m in extra_modules:
        m.to(device)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, max(1, int(cfg.warmup_frac * total))))
    start_epoch, best, history = 0, -1.0, []
    qat_observers = None  # QAT activation ranges of a resumed run
    if resume and last_path.exists():
        state = safe_load(last_path)
        model.load_state_dict(state["state_dict"])
        for m, sd in zip(extra_modules, state.get("extra_modules", [])):
            m.load_state_dict(sd)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        qat_observers = state.get("qat_observers")
        # An epoch logged after the last checkpoint is redone: keep the log equal to the checkpoint's history.
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        steps_log = run_dir / "steps.jsonl"
        if steps_log.exists():
            done = (start_epoch) * cfg.steps_per_epoch
            kept = [ln for ln in steps_log.read_text().splitlines(keepends=True)
                    if ln.endswith("\n") and json.loads(ln)["step"] <= done]
            steps_log.write_text("".join(kept))
        logger.info("resuming %s from epoch %d", run_dir, start_epoch)

    if cfg.qat:  # after the resume: prepare_qat keeps the Parameter objects the optimizer holds
        from wakeword.training.qat import calibration_windows_from, observer_state, prepare_qat, strip_qat

        prepare_qat(model, None if qat_observers else calibration_windows_from(ds, seed=cfg.seed),
                    observers=qat_observers)

    def plain(m: WakeWordModel) -> WakeWordModel:  # checkpoints hold the ordinary float model
        return strip_qat(m) if cfg.qat else m

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    step = start_epoch * cfg.steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        ds.set_epoch(epoch % cfg.augment_draws if cfg.augment_draws > 0 else epoch)
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout draws: a resumed epoch replays exactly
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        sampler = WeightedRandomSampler(weights, cfg.steps_per_epoch * cfg.batch_size, replacement=True,
                                        generator=gen)
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                            num_workers=0 if cached else cfg.num_workers,
                            drop_last=True, worker_init_fn=_worker_init, persistent_workers=False)
        model.train()
        for m in extra_modules:
            m.train()
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        with open(run_dir / "steps.jsonl", "a") as step_log:
            for audio, labels, keys in bar:
                audio, labels = audio.to(device), labels.to(device).float()
                if cached:  # `audio` holds the window's cached embeddings (B, 96, E)
                    inputs = audio
                    logits, h = model.backbone.head_logits(inputs)
                    feats = [inputs, h.transpose(1, 2)]
                else:
                    with torch.no_grad():
                        inputs = model.frontend(audio)
                    # SpecAugment is for log-mel; the Wav2Vec2 teacher masks its own hidden frames when training.
                    x = specaug(inputs, gen) if model.input_kind == "mel" else inputs
                    logits, feats = model.backbone.forward_features(x)
                loss = window_loss(logits, labels, cfg, step, total)
                logs = {"loss_cls": loss.item()}
                batch = Batch(audio, labels, keys, inputs, logits, feats, step, total)
                for term in loss_terms:
                    extra, term_logs = term(batch)
                    loss = loss + extra
                    logs.update(term_logs)
                logs["loss"] = loss.item()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                sched.step()
                step += 1
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                    writer.add_scalar(f"train/{k}", v, step)
                step_log.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in logs.items()}}) + "\n")
                bar.set_postfix(loss=f"{logs['loss']:.3f}")
        n = max(1, cfg.steps_per_epoch)
        record = {"epoch": epoch + 1, "step": step, "lr": sched.get_last_lr()[0],
                  **{f"train_{k}": v / n for k, v in sums.items()}}
        if scorer is not None or stream_val:
            model.eval()
            record.update(stream_validation(scorer or _TorchScorer(model, device), val_rows, val_clips, cfg))
        else:
            record.update(validate(model, val_rows, val_clips, cfg.max_fpr, device))
        record["seconds"] = round(time.time() - t0, 2)
        history.append(record)
        for k, v in record.items():
            if k.startswith("val_"):
                writer.add_scalar(f"val/{k[4:]}", v, epoch + 1)
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        logger.info("epoch %d: loss %.4f val pAUC %.4f EER %.4f (%.1fs)", epoch + 1, record.get("train_loss", 0),
                    record["val_pauc"], record["val_eer"], record["seconds"])
        if selection_score(record, cfg) > best:
            best = selection_score(record, cfg)
            save_checkpoint(run_dir / "best.pt", plain(model).cpu(), resolved, metrics=record,
                            extra={"threshold": record.get("val_threshold")})
            model.to(device)
        save_checkpoint(last_path, plain(model).cpu(), resolved, metrics=record, extra={
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch, "best": best,
            "history": history, "extra_modules": [m.state_dict() for m in extra_modules],
            **({"qat_observers": observer_state(model)} if cfg.qat else {})})
        model.to(device)
    writer.close()
    if not (run_dir / "best.pt").exists():  # e.g. a selection score that was never a number
        raise ValueError(f"training wrote no best.pt in {run_dir} (selection score per epoch: "
                         f"{[selection_score(r, cfg) for r in history]})")
    best_record = max(history, key=lambda r: selection_score(r, cfg)) if history else {}
    summary = {"best": best_record, "best_checkpoint": str(run_dir / "best.pt"), "epochs": len(history), **size,
               **clip_counts}
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
