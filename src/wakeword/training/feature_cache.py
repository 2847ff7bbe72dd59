"""Embeddings of a frozen backbone computed once and stored: data at scale on a CPU.

The speech embedding under the default detector is frozen, so a training window's embeddings depend only on
the clip and its augmentation draw. They are computed once for ``draws`` fixed draws per clip (the draws the
uncached loop makes with ``augment_draws``: same generator seeds, so cached = recomputed, which a test checks)
and stored as float16 in one memory-mapped array; the head then trains for tens of thousands of steps in
minutes. Validation audio (positives padded with silence, negatives as long streams) is embedded once
(``EmbeddingTrackScorer``).

Layout: ``<data_dir>/cache/<kind>-<key>/``, where the key hashes everything that determines the numbers (the
clips' sha256 and labels, augmentation and front-end settings, seed, draws, background and RIR audio, the
embedding's weights). Work is written in chunks (``part-*.npy``, atomically renamed), so a killed build
resumes with nothing lost or duplicated; when all chunks exist they are joined into ``embeddings.npy``. Runs
building one cache at once share the chunks: each claims a chunk (``claim-*``, its pid) before computing it, and
takes over the claims of runs that died.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

logger = logging.getLogger(__name__)

CHUNK = 256  # windows per resumable chunk (a few seconds of work)
STALE_CLAIM_S = 600.0  # a claim on a chunk older than this is a dead run's, whatever process holds its pid now


def digest(*parts) -> str:
    """A short stable hash of JSON-able parts and numpy arrays / tensors."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode() + str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def weights_digest(module: torch.nn.Module) -> str:
    return digest(*[t for _, t in sorted(module.state_dict().items())])


def audio_digest(clips: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for c in clips:
        h.update(np.ascontiguousarray(c, dtype=np.float32).tobytes())
        h.update(b"|")
    return h.hexdigest()[:20]


class _Draws(Dataset):
    """(draw, clip) pairs of a TrainWindows, in order: item k -> (audio, k)."""

    def __init__(self, ds, draws: int, start: int, stop: int):
        self.ds, self.draws, self.start, self.stop = ds, draws, start, stop
        self.n = len(ds)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, j: int):
        k = self.start + j
        d, i = divmod(k, self.n)
        return torch.from_numpy(self.ds.window(d, i)), k  # the uncached loop's draw d of clip i


def all_cores(backbone) -> None:
    """Let the frozen embedding's onnxruntime session use every core: building a cache (or embedding hours of
    evaluation audio) is most of the work, while the head runs fastest on one thread (torch's own thread count is
    left as it is). Does nothing for a backbone without a frozen embedding."""
    from wakeword.models.speech_embedding import _ORT_SESSIONS

    if not getattr(backbone, "embedding_frozen", False):
        return
    n = os.cpu_count() or 1
    before = torch.get_num_threads()
    if n <= before:
        return
    _ORT_SESSIONS.pop(backbone.embedding, None)
    torch.set_num_threads(n)
    try:
        backbone.embedding.embed_frames(torch.zeros(1, 76, backbone.embedding.n_mels))  # the session, with n threads
    finally:
        torch.set_num_threads(before)


def _embed_windows(backbone, audio: torch.Tensor) -> np.ndarray:
    """(B, samples) -> (B, 96, E) float16 embeddings of each window."""
    with torch.no_grad():
        return backbone.embedding(audio).numpy().astype(np.float16)


def _join(parts_dir: Path, n_total: int, shape_tail: tuple, out: Path) -> np.ndarray:
    tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.npy")  # per process: two runs may build one cache at once
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n_total, *shape_tail))
        for start in range(0, n_total, CHUNK):
            part = np.load(parts_dir / f"part-{start:09d}.npy")
            arr[start:start + len(part)] = part
        arr.flush()
        del arr
        tmp.replace(out)
    except BaseException:  # e.g. another run joined first and dropped the chunks: leave no half-written file
        tmp.unlink(missing_ok=True)
        raise
    _drop_parts(parts_dir)
    return np.load(out, mmap_mode="r")


def _drop_parts(parts_dir: Path) -> None:
    """Remove the chunks of a joined cache and stale temporaries of killed runs (also a chunk another run wrote
    after this one joined)."""
    for p in [*parts_dir.glob("part-*.npy"), *parts_dir.glob("claim-*")]:
        p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _claim(parts_dir: Path, start: int) -> bool:
    """Claim chunk ``start`` for this process (a ``claim-*`` file holding its pid); False when another live run
    holds it. A killed run's claim is taken over, so a resumed build computes what that run left."""
    claim = parts_dir / f"claim-{start:09d}"
    for _ in range(3):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                text = claim.read_text()
                age = time.time() - claim.stat().st_mtime
            except FileNotFoundError:  # just released
                continue
            if age > STALE_CLAIM_S:  # a chunk takes seconds: its run died (its pid may be another process's now)
                claim.unlink(missing_ok=True)
                continue
            if not text.strip().isdigit():  # its owner is writing its pid, or died doing so
                if age < 5:
                    return False
                claim.unlink(missing_ok=True)
                continue
            pid = int(text)
            if pid == os.getpid():
                return True
            if _alive(pid):
                return False
            claim.unlink(missing_ok=True)  # its run died: take it over
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def train_cache(ds, backbone, draws: int, cache_root: Path, key_extra: dict, progress: bool = True,
                batch_size: int = 32, num_workers: int = 1) -> np.ndarray:
    """Embeddings of ``draws`` augmentation draws of every window of ``ds`` (a TrainWindows).

    Returns a read-only memmap (draws * len(ds), 96, E) float16; row d * len(ds) + i is draw d of clip i.
    """
    key = digest("train", draws, ds.seed, ds.feat.to_dict(), ds.aug.to_dict(), ds.labels,
                 [audio_digest(ds.clips), audio_digest(ds.noises), audio_digest(ds.rirs)],
                 weights_digest(backbone.embedding), key_extra)
    d = cache_root / f"train-{key}"
    out = d / "embeddings.npy"
    if out.exists():
        logger.info("training embeddings: cached in %s", d)
        return np.load(out, mmap_mode="r")
    d.mkdir(parents=True, exist_ok=True)
    total = draws * len(ds)
    todo = [s for s in range(0, total, CHUNK) if not (d / f"part-{s:09d}.npy").exists()]
    logger.info("training embeddings: %d windows (%d draws x %d clips), %d chunks to compute in %s", total, draws,
                len(ds), len(todo), d)
    all_cores(backbone)
    bar = tqdm(total=len(todo) * CHUNK, desc="embedding cache", unit="win", disable=not progress)

    def compute(start: int) -> None:
        stop = min(total, start + CHUNK)
        loader = DataLoader(_Draws(ds, draws, start, stop), batch_size=batch_size, num_workers=num_workers,
                            worker_init_fn=lambda _: torch.set_num_threads(1))
        parts = []
        for audio, _ in loader:
            parts.append(_embed_windows(backbone, audio))
            bar.update(len(audio))
        part = np.concatenate(parts)
        tmp = d / f"part-{start:09d}.{os.getpid()}.tmp.npy"
        np.save(tmp, part)
        try:
            tmp.replace(d / f"part-{start:09d}.npy")
        except FileNotFoundError:  # another run joined the cache meanwhile and removed the temporaries
            if not out.exists():
                raise

    def done(start: int) -> bool:
        return (d / f"part-{start:09d}.npy").exists() or out.exists()

    computed = 0
    for start in todo:  # chunks another live run is computing are left to it (ablation --workers N)
        if not done(start) and _claim(d, start):
            compute(start)
            computed += 1
    waiting = [s for s in todo if not done(s)]
    while waiting:  # chunks others claimed: wait for them, or compute those whose run died
        for start in waiting:
            if not done(start) and _claim(d, start):
                compute(start)
                computed += 1
        waiting = [s for s in waiting if not done(s)]
        if waiting:
            time.sleep(0.5)
    logger.info("training embeddings: computed %d of %d chunks here", computed, len(todo))
    bar.close()
    try:
        if out.exists():  # another run joined it while this one computed chunks: drop what this one left
            _drop_parts(d)
            return np.load(out, mmap_mode="r")
        first = np.load(d / f"part-{0:09d}.npy", mmap_mode="r")
        return _join(d, total, tuple(first.shape[1:]), out)
    except FileNotFoundError:  # another run joined it first (ablation --workers N: runs of one data folder)
        if out.exists():
            _drop_parts(d)
            return np.load(out, mmap_mode="r")
        raise


class CachedWindows(Dataset):
    """Training items from cached embeddings: item k -> (embeddings (96, E) float32, label, key (draw, clip))."""

    def __init__(self, emb: np.ndarray, labels: np.ndarray, draws: int):
        if len(emb) != draws * len(labels):
            raise ValueError(f"embedding cache holds {len(emb)} windows, expected {draws} x {len(labels)}")
        self.emb, self.labels, self.draws, self.n = emb, labels, draws, len(labels)

    def __len__(self) -> int:
        return len(self.emb)

    def __getitem__(self, k: int):
        d, i = divmod(k, self.n)
        return torch.from_numpy(np.asarray(self.emb[k], dtype=np.float32)), int(self.labels[i]), torch.tensor([d, i])


class EmbeddingTrackScorer:
    """``score_track(audio) -> (scores, hop_s)`` of a frozen-embedding detector whose embeddings of each distinct
    track are computed once (in memory, and on disk under ``cache_dir`` when given): validation scores the same
    audio every epoch through the one scoring protocol (``evaluation.evaluate.score_set``) for the cost of the head.
    """

    def __init__(self, model, cache_dir: Path | None = None, dtype=np.float16, memory: bool = True):
        self.model, self.feat = model, model.feat
        self.cache_dir, self.dtype, self.memory = cache_dir, dtype, memory  # memory: also keep them in RAM
        self._emb: dict[str, np.ndarray] = {}
        self._weights = weights_digest(model.backbone.embedding)

    def embeddings(self, audio: np.ndarray) -> np.ndarray:
        key = digest(audio_digest([audio]), self._weights, np.dtype(self.dtype).str)
        e = self._emb.get(key)
        if e is None:
            path = None if self.cache_dir is None else self.cache_dir / f"{key}.npy"
            if path is not None and path.exists():
                e = np.load(path)
            else:
                with torch.no_grad():
                    t = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
                    e = self.model.backbone.track_embeddings(t).T.numpy().astype(self.dtype)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
                    np.save(tmp, e)
                    tmp.replace(path)
            if self.memory:
                self._emb[key] = e
        return e

    @torch.no_grad()
    def score_track(self, audio: np.ndarray) -> tuple[np.ndarray, float]:
        m = self.model
        n = 1 + (len(audio) - m.window_len) // m.stride_len
        if n < 1:
            raise ValueError("track shorter than one window")
        e = torch.from_numpy(self.embeddings(audio).astype(np.float32))
        logits = m.backbone.head_track(e[:, : n + m.backbone.context - 1])
        return torch.sigmoid(logits).numpy(), self.feat.score_hop_s
