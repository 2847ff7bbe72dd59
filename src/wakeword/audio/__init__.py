"""Audio loading, resampling, saving, TTS backends and noise/RIR mixing."""
from wakeword.audio.io import SAMPLE_RATE, AudioError, load_audio, resample, save_wav

__all__ = ["SAMPLE_RATE", "AudioError", "load_audio", "resample", "save_wav"]
