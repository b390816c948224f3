"""Orbax CheckpointManager for a run: params, optimizer state and a JSON meta per step; keep N; async; atomic.

Orbax writes each step under a temporary name and renames it when complete, so a run killed mid-save leaves
the previous step as the latest. The meta records the model shape, so restoring into a different shape stops
with a one-line reason instead of an Orbax traceback.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from coda_training.config import Config, ModelConfig, model_shape, shape_mismatch
from coda_training.errors import TrainingError

class Checkpoints:
    """The checkpoints of one run directory."""

    def __init__(self, run_dir: str | Path, cfg: Config | None = None, *, read_only: bool = False):
        self.directory = (Path(run_dir) / "checkpoints").resolve()
        if read_only and not self.directory.is_dir():
            raise TrainingError(f"{run_dir} has no checkpoints/ folder")
        keep = cfg.checkpoint.keep if cfg else None
        async_save = cfg.checkpoint.async_save if cfg else False
        # A source run is opened without `create` rather than read_only, which Orbax announces with warnings.
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=not read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("params", "opt_state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def meta(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return restored["meta"]

    def check_shape(self, step: int, model: ModelConfig) -> None:
        found = self.meta(step).get("model_shape", {})
        reason = shape_mismatch(model_shape(model), found)
        if reason:
            raise TrainingError(f"checkpoint {self.directory}/{step} is for a different model shape ({reason})")

    def save(self, step: int, state: dict, cfg: Config) -> None:
        meta = {"step": step, "stage": cfg.stage, "optimizer": cfg.optim.name, "model_shape": model_shape(cfg.model),
                "model": dataclasses.asdict(cfg.model)}
        self.manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(state["params"]),
                                                        opt_state=ocp.args.StandardSave(state["opt_state"]),
                                                        meta=ocp.args.JsonSave(meta)))

    def restore_params(self, step: int, abstract_params: dict) -> dict:
        """Only the weights, each placed on the sharding its abstract leaf carries."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params)))
        return restored["params"]

    def restore_state(self, step: int, abstract_state: dict, cfg: Config) -> dict:
        """The full training state to resume from; the optimizer must be the one that wrote it."""
        saved_optimizer = self.meta(step).get("optimizer")
        if saved_optimizer != cfg.optim.name:
            raise TrainingError(f"checkpoint {self.directory}/{step} holds {saved_optimizer} state but optim.name is "
                                f"{cfg.optim.name}; use a new run_dir with init.kind=checkpoint")
        restored = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_state["params"]),
            opt_state=ocp.args.StandardRestore(abstract_state["opt_state"])))
        step_array = jax.device_put(jax.numpy.asarray(step, jax.numpy.int32), abstract_state["step"].sharding)
        return {"step": step_array, "params": restored["params"], "opt_state": restored["opt_state"]}

    def wait(self) -> None:
        """Block until async saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
