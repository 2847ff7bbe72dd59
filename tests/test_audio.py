import numpy as np
import pytest
import soundfile as sf

from wakeword.audio.io import SAMPLE_RATE, AudioError, load_audio, resample, trim_silence
from wakeword.audio.mixing import coloured_noise, mix_at_snr, power, reverberate, synthetic_rir


def test_load_converts_rate_and_channels(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    p = tmp_path / "stereo.flac"
    sf.write(p, stereo, 44100)
    a = load_audio(p)
    assert a.dtype == np.float32 and a.ndim == 1
    assert abs(len(a) - SAMPLE_RATE) <= 1
    spec = np.abs(np.fft.rfft(a))
    assert abs(np.argmax(spec) * SAMPLE_RATE / len(a) - 440) < 3  # the tone survives resampling


@pytest.mark.parametrize("content", [b"", b"not audio at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_bad_files_raise_audio_error(tmp_path, content):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError):
        load_audio(p)


def test_missing_file_raises(tmp_path):
    with pytest.raises(AudioError):
        load_audio(tmp_path / "nope.wav")


def test_resample_identity_and_length():
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    assert resample(x, 16000) is not None and np.array_equal(resample(x, 16000, 16000), x)
    assert len(resample(x, 8000, 16000)) == 16000


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_mix_hits_requested_snr(snr, colour):
    rng = np.random.default_rng(1)
    sig = np.sin(2 * np.pi * 300 * np.arange(16000) / 16000).astype(np.float32) * 0.3
    noise = coloured_noise(colour, 7000, rng)  # shorter than the signal: tiled
    mixed = mix_at_snr(sig, noise, snr)
    measured = 10 * np.log10(power(sig) / power(mixed - sig))
    assert abs(measured - snr) < 0.5


def test_trim_and_reverb_keep_sense():
    x = np.zeros(16000, np.float32)
    x[6000:8000] = 0.5 * np.sin(np.arange(2000) / 5)
    y = trim_silence(x)
    assert 2000 <= len(y) <= 2000 + 2 * 800 + 320
    rir = synthetic_rir(np.random.default_rng(0))
    wet = reverberate(x, rir)
    assert len(wet) == len(x) and np.isclose(np.abs(wet).max(), np.abs(x).max())


def test_band_limit_removes_out_of_band_energy():
    from wakeword.audio.mixing import band_limit

    t = np.arange(16000) / 16000
    low, high = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 6500 * t)
    y = band_limit((low + high).astype(np.float32), 100.0, 3400.0)
    spec = np.abs(np.fft.rfft(y[2000:]))
    f = np.fft.rfftfreq(len(y) - 2000, 1 / 16000)
    assert spec[np.argmin(abs(f - 6500))] < 0.01 * spec[np.argmin(abs(f - 1000))]
