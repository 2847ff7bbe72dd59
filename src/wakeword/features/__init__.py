"""The one log-mel front end and SpecAugment."""
from wakeword.features.logmel import FeatureConfig, LogMel
from wakeword.features.specaugment import SpecAugment, SpecAugmentConfig

__all__ = ["FeatureConfig", "LogMel", "SpecAugment", "SpecAugmentConfig"]
