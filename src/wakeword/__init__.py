"""wakeword: custom wake-word detectors of very high precision."""
__version__ = "0.1.0"
