"""The one training loop, its losses and checkpoints."""
from wakeword.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from wakeword.training.fit import TrainConfig, fit

__all__ = ["TrainConfig", "fit", "load_checkpoint", "load_model", "save_checkpoint"]
