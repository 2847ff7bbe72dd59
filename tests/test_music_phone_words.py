"""Data levers for real-world negatives: synthetic music, the telephone line, isolated words."""
import numpy as np
import pytest

from wakeword.audio.io import SAMPLE_RATE


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE), np.abs(np.fft.rfft(x)) ** 2


def test_music_is_seeded_tonal_and_varied():
    from wakeword.audio.music import synth_music

    n = 4 * SAMPLE_RATE
    a, a2 = synth_music(n, np.random.default_rng(5)), synth_music(n, np.random.default_rng(5))
    b = synth_music(n, np.random.default_rng(6))
    assert a.dtype == np.float32 and a.shape == (n,) and np.array_equal(a, a2)
    assert not np.allclose(a, b)
    assert np.isclose(np.abs(a).max(), 0.9, atol=1e-3)
    # Tonal: energy concentrates in few spectral lines, unlike white noise of the same length.
    for x in (a, b):
        _, p = _spectrum(x)
        top = np.sort(p)[::-1]
        assert top[: len(top) // 100].sum() > 0.5 * top.sum()


def test_mu_law_is_a_fine_quantizer_and_telephone_is_narrow_band():
    from wakeword.audio.mixing import mu_law, telephone

    ramp = np.linspace(-1, 1, 1001).astype(np.float32)
    q = mu_law(ramp)
    assert np.abs(q - ramp).max() < 0.025 and len(np.unique(q)) <= 256
    small = ramp * 0.01  # mu-law keeps small signals: relative error stays bounded
    assert np.abs(mu_law(small) - small).max() < 0.002

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)
         + 0.3 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    y = telephone(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    f, p = _spectrum(y[1600:])
    def at(hz):
        return p[np.argmin(np.abs(f - hz))]
    assert at(6000) < 1e-4 * at(1000)  # nothing above 4 kHz survives 8 kHz sampling
    assert at(100) < 0.05 * at(1000)  # the line's high-pass
    assert p[f > 4100].sum() < 1e-3 * p.sum()


def test_phone_prob_zero_keeps_the_band_and_one_band_limits_every_window():
    from wakeword.audio.mixing import coloured_noise
    from wakeword.dataset.augment import AugmentConfig, augment_window

    clip = (np.random.default_rng(1).standard_normal(9000) * 0.2).astype(np.float32)
    noises = [coloured_noise("white", 32000, np.random.default_rng(3))]
    wide = AugmentConfig(phone_prob=0.0, channel_prob=0.0)
    for i in range(5):
        off = augment_window(clip, 0, 16000, wide, np.random.default_rng([0, 0, i]), noises, [])
        f, p = _spectrum(off)
        assert p[f > 4200].sum() > 0.1 * p.sum()  # white-ish input keeps its upper band
    for i in range(5):
        on = augment_window(clip, 0, 16000, AugmentConfig(phone_prob=1.0), np.random.default_rng([0, 0, i]),
                            noises, [])
        if np.any(on):
            f, p = _spectrum(on)
            assert p[f > 4200].sum() < 1e-3 * p.sum()


def test_word_texts_are_single_words_without_the_phrase():
    from wakeword.dataset.text import contains_phrase, normalise, word_texts

    words = word_texts("computer", 5000, 0)
    assert len(words) == 5000 and words == word_texts("computer", 5000, 0)
    assert all(len(normalise(w).split()) == 1 and not contains_phrase(w, "computer") for w in words)
    assert len({normalise(w) for w in words}) > 3000  # the whole common vocabulary, not a few words


def test_build_adds_music_and_words_without_changing_existing_clips(tmp_path):
    from wakeword.dataset.build import DataConfig, build
    from wakeword.dataset.manifest import read_manifest

    base = dict(phrase="hello robot", n_positive=4, n_adversarial=3, n_speech=2, n_noise=2, n_babble=0,
                n_words=0,
                engines=("espeak-ng",), music_s=2.0)
    build(DataConfig(**base), tmp_path, progress=False)
    before = {r.clip_id: r.sha256 for r in read_manifest(tmp_path)}
    build(DataConfig(**{**base, "n_words": 6, "n_music": 13}), tmp_path, progress=False)
    rows = read_manifest(tmp_path)
    after = {r.clip_id: r.sha256 for r in rows}
    assert all(after[k] == v for k, v in before.items())  # an existing build is completed, not redone
    music = [r for r in rows if r.kind == "music"]
    words = [r for r in rows if r.kind == "word"]
    assert len(music) == 13 and all(r.label == 0 and abs(r.duration_s - 2.0) < 0.01 for r in music)
    assert {r.split for r in music} == {"train", "val", "test"}  # pieces held out like speakers
    assert len(words) >= 5 and all(r.label == 0 and len(r.text.split()) == 1 for r in words)


def test_fit_refuses_unknown_excluded_kinds(tiny_data, tmp_path):
    from wakeword.training.fit import TrainConfig, fit

    with pytest.raises(ValueError, match="exclude_kinds"):
        fit(TrainConfig(epochs=1, steps_per_epoch=1, exclude_kinds=("musik",)), tiny_data, tmp_path, progress=False)
    with pytest.raises(ValueError, match="background_kinds"):
        fit(TrainConfig(epochs=1, steps_per_epoch=1, background_kinds=("nois",)), tiny_data, tmp_path / "b",
            progress=False)
