"""coda_training: the three-stage JAX/flax/optax pipeline (pre-train, mid-train, SFT) that produces CoDA weights.

Importing it before jax sets one XLA:CPU flag. XLA:CPU's default scheduler orders independent work for
concurrency and so keeps the optimizer update of every large weight in flight at once: the 1p7b shape cut to 2
layers compiled to 8.08 GiB per device (four [V, D] fp32 buffers: the gradients and the updates of embed_tokens
and lm_head) and to 6.46 GiB with the memory-minimising scheduler. XLA reads XLA_FLAGS once, when it first
starts a backend, and a per-compile `compiler_options` entry for this flag is ignored (measured, jax 0.10.2).
"""

import os
import sys

from coda_training.errors import TrainingError

CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"

if "jax" not in sys.modules and CPU_SCHEDULER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {CPU_SCHEDULER_FLAG}=false".strip()

__all__ = ["TrainingError"]
