"""Student and teacher models behind a name -> builder registry."""
from wakeword.models.mobilenetv3 import MobileNetV3, StudentConfig
from wakeword.models.registry import build_model, count_macs, count_params, register

__all__ = ["MobileNetV3", "StudentConfig", "build_model", "count_macs", "count_params", "register"]
