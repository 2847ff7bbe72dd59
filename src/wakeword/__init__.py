"""wakeword: custom wake-word detectors of very high precision.

``import wakeword`` stays light; the heavy parts load on first use.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Detector", "StreamingDetector", "__version__"]


def __getattr__(name: str):
    if name in ("Detector", "StreamingDetector"):
        from wakeword import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'wakeword' has no attribute {name!r}")
