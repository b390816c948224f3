"""coda_training: the three-stage JAX/flax/optax pipeline (pre-train, mid-train, SFT) that produces CoDA weights."""

from coda_training.errors import TrainingError

__all__ = ["TrainingError"]
