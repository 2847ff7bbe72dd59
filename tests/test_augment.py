import numpy as np

from wakeword.audio.mixing import coloured_noise
from wakeword.dataset.augment import AugmentConfig, augment_window, place


def test_place_positive_never_wraps_or_cuts():
    rng = np.random.default_rng(0)
    clip = np.ones(9000, np.float32)
    for _ in range(50):
        w = place(clip, 16000, rng, label=1)
        nz = np.flatnonzero(w)
        assert len(nz) == 9000 and nz[-1] - nz[0] == 8999  # whole word, contiguous: no wrap-around


def test_augment_draws_are_per_sample_and_reproducible():
    clip = np.sin(np.arange(8000) / 7).astype(np.float32) * 0.5
    noises = [coloured_noise("pink", 32000, np.random.default_rng(3))]
    cfg = AugmentConfig()
    a = augment_window(clip, 1, 16000, cfg, np.random.default_rng([0, 0, 1]), noises, [])
    b = augment_window(clip, 1, 16000, cfg, np.random.default_rng([0, 0, 2]), noises, [])
    a2 = augment_window(clip, 1, 16000, cfg, np.random.default_rng([0, 0, 1]), noises, [])
    assert a.shape == (16000,) and not np.allclose(a, b)
    assert np.array_equal(a, a2)
    assert np.abs(a).max() <= 1.0
