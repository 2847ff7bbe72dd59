"""Shared fixtures: a tiny real data set built once per session with the fast TTS engines."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Builds render every clip unless a test asks for the clip cache (tests/test_build.py): a test must not pass
# or fail because another run left clips in ~/.cache.
os.environ["WAKEWORD_CLIP_CACHE"] = "off"


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)  # the models are small: one thread is fastest and avoids OpenMP spinning

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"


def real_file(rel: str) -> Path:
    p = REAL / rel
    if not p.exists():
        pytest.skip(f"real development recordings not present ({p})")
    return p


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A real (small) data build: espeak-ng + flite positives/negatives, synthetic noise, babble."""
    from wakeword.dataset.build import DataConfig, build

    out = tmp_path_factory.mktemp("data")
    cfg = DataConfig(phrase="computer", n_positive=48, n_adversarial=24, n_speech=16, n_noise=6, n_babble=3,
                     n_words=0, engines=("espeak-ng", "flite"))
    report = build(cfg, out, progress=False)
    assert report["clips"] > 60, report
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A few training steps on the tiny data set; returns the run folder."""
    from wakeword.training.fit import TrainConfig, fit

    run = tmp_path_factory.mktemp("run")
    fit(TrainConfig(epochs=2, steps_per_epoch=4, batch_size=16, model={"width": 0.5}), tiny_data, run,
        progress=False)
    return run


@pytest.fixture(scope="session")
def speech_audio() -> np.ndarray:
    """A few seconds of real speech if the development set is here, else espeak-ng speech."""
    from wakeword.audio.io import load_audio

    p = REAL / "ljspeech_coqui"
    files = sorted(p.rglob("*.flac")) if p.exists() else []
    if files:
        return load_audio(files[0])[: 16000 * 4]
    from wakeword.audio.tts import EspeakBackend, Prosody

    b = EspeakBackend()
    return b.synthesize("this is a short sentence about a computer in the kitchen", b.voices()[0], Prosody())


def responsive_model(audio: np.ndarray, width: float = 1.0, window_norm: str = "none"):
    """An untrained WakeWordModel whose BatchNorm statistics come from ``audio``, so its scores vary."""
    import torch

    from wakeword.features.logmel import FeatureConfig
    from wakeword.models.kws import WakeWordModel

    torch.manual_seed(0)
    feat = FeatureConfig()
    m = WakeWordModel("mobilenetv3", {"width": width, "window_norm": window_norm}, feat)
    n = feat.window_samples
    x = np.concatenate([audio, audio])
    wins = torch.from_numpy(np.stack([x[i:i + n] for i in range(0, len(x) - n, n // 4)]))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average over the calibration batch
    m.train()
    with torch.no_grad():
        m(wins)
        m.backbone.classifier.weight.normal_(0, 1.0)
    return m.eval()


def start_train_and_kill(cmd: list[str], run: Path) -> int:
    """Start ``cmd`` (a `wakeword train` process), SIGKILL it once ``run/last.pt`` exists; epochs done."""
    import os
    import signal
    import subprocess
    import time

    import torch

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and not (run / "last.pt").exists():
        time.sleep(0.05)
    assert (run / "last.pt").exists(), "training never checkpointed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return torch.load(run / "last.pt", weights_only=True)["epoch"] + 1
