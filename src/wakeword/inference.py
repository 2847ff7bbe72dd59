"""The inference API (kept at this name for users): ``wakeword.runtime.detector``."""
from wakeword.runtime.detector import Detector, Event, StepStreamingDetector, StreamingDetector

__all__ = ["Detector", "Event", "StepStreamingDetector", "StreamingDetector"]
