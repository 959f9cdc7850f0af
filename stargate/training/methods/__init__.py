"""Training methods (`training.method`): one module each, listed in registry.py (see base.py)."""

from .base import TrainerContext, TrainingMethod
from .registry import METHODS, get_method, method_blocks, selecting_methods, training_for_method

__all__ = [
    "METHODS",
    "TrainerContext",
    "TrainingMethod",
    "get_method",
    "method_blocks",
    "selecting_methods",
    "training_for_method",
]
