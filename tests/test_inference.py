import subprocess
import sys

import numpy as np
import pytest

from conftest import responsive_model
from wakeword.inference import Detector


def _detector(audio: np.ndarray) -> Detector:
    return Detector(responsive_model(audio, width=0.5))


@pytest.mark.parametrize("chunk", [160, 1000, 1280, 4097])
def test_streaming_equals_score_track(speech_audio, chunk):
    det = _detector(speech_audio)
    offline, hop = det.score_track(speech_audio)
    st = det.stream()
    online = np.concatenate([st.feed(speech_audio[i:i + chunk]) for i in range(0, len(speech_audio), chunk)])
    assert online.shape == offline.shape
    assert np.abs(online - offline).max() < 1e-4  # float32 batched vs one-by-one matmuls
    assert np.isclose(hop, 0.08)


def test_scores_are_probabilities_and_detect_returns_events(speech_audio):
    det = _detector(speech_audio)
    s, _ = det.score_track(speech_audio)
    assert s.min() >= 0 and s.max() <= 1
    thr = float(np.quantile(s, 0.5))
    events = det.detect(speech_audio, threshold=thr, refractory_s=0.5)
    assert len(events) >= 1
    assert all(0 < e.time_s <= len(speech_audio) / 16000 + 1e-6 and e.score >= thr for e in events)
    assert det.detect(speech_audio, threshold=1.01) == []


def test_short_audio_is_padded_and_stereo_refused(speech_audio):
    det = _detector(speech_audio)
    s, _ = det.score_track(np.zeros(4000, np.float32))
    assert s.shape == (1,)
    with pytest.raises(ValueError):
        det.score_track(np.zeros((100, 2), np.float32))


def test_import_wakeword_is_light():
    code = ("import sys, wakeword; assert 'torch' not in sys.modules, 'torch leaked'; "
            "assert 'transformers' not in sys.modules; print(wakeword.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
