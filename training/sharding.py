"""Device mesh over (data, fsdp, tensor) and ShardingRules: one PartitionSpec per weight and activation kind.

Field names carry their dims (v vocab, d model, n heads x head_dim, f MLP width, b batch, l length), so a
spec reads against the array it shards. Weights are split over fsdp on D and over tensor on the other dim;
the batch is split over data and fsdp together, so every device gets distinct rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from coda_training.config import MeshConfig
from coda_training.errors import TrainingError

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
    """Resolve the one allowed -1 axis; the product must equal the device count."""
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise TrainingError(f"mesh {dict(zip(AXES, sizes))}: sizes must be positive, with at most one -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise TrainingError(f"mesh {dict(zip(AXES, sizes))} does not divide {num_devices} devices")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise TrainingError(f"mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, found {num_devices}")
    return tuple(sizes)


def make_mesh(cfg: MeshConfig, devices: list | None = None) -> Mesh:
    """One mesh for the whole run; Auto axes let XLA propagate shardings between the annotated points."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(cfg, len(devices))
    auto = (jax.sharding.AxisType.Auto,) * len(AXES)
    return jax.make_mesh(shape, AXES, axis_types=auto, devices=devices)


@dataclass(frozen=True)
class ShardingRules:
    emb_vd: P  # embed_tokens [V, D]
    head_dv: P  # lm_head kernel [D, V]
    attn_in_dn: P  # q/k/v_proj kernels [D, heads*H]
    attn_out_nd: P  # o_proj kernel [heads*H, D]
    ffw_in_df: P  # gate/up_proj kernels [D, F]
    ffw_out_fd: P  # down_proj kernel [F, D]
    norm_d: P  # RMSNorm weights: tiny, replicated
    act_bl: P  # token batches [B, L]

    @classmethod
    def fsdp_tp(cls) -> "ShardingRules":
        return cls(
            emb_vd=P("tensor", "fsdp"), head_dv=P("fsdp", "tensor"),
            attn_in_dn=P("fsdp", "tensor"), attn_out_nd=P("tensor", "fsdp"),
            ffw_in_df=P("fsdp", "tensor"), ffw_out_fd=P("tensor", "fsdp"),
            norm_d=P(), act_bl=P(BATCH_AXES, None),
        )

    def spec(self, name: str) -> P:
        """The spec of one flat parameter name (see model.flatten)."""
        if name == "embed_tokens":
            return self.emb_vd
        if name == "lm_head.kernel":
            return self.head_dv
        if name.endswith(("q_proj.kernel", "k_proj.kernel", "v_proj.kernel")):
            return self.attn_in_dn
        if name.endswith("o_proj.kernel"):
            return self.attn_out_nd
        if name.endswith(("gate_proj.kernel", "up_proj.kernel")):
            return self.ffw_in_df
        if name.endswith("down_proj.kernel"):
            return self.ffw_out_fd
        if name.endswith(".weight"):
            return self.norm_d
        raise KeyError(f"no sharding rule for parameter {name!r}")


def _check_divisible(name: str, shape: tuple[int, ...], spec: P, mesh: Mesh) -> None:
    for dim, axes in zip(shape, spec):
        if axes is None:
            continue
        size = math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)))
        if dim % size:
            raise TrainingError(f"parameter {name} {tuple(shape)} cannot be split {size} ways along {axes}; "
                                f"change mesh.* or the model shape")


def param_shardings(mesh: Mesh, rules: ShardingRules, shapes: dict[str, tuple[int, ...]]) -> dict[str, NamedSharding]:
    """A NamedSharding per flat parameter name, refusing shapes the mesh cannot split evenly."""
    out = {}
    for name, shape in shapes.items():
        spec = rules.spec(name)
        _check_divisible(name, shape, spec, mesh)
        out[name] = NamedSharding(mesh, spec)
    return out


def opt_state_shardings(mesh: Mesh, abstract_opt_state: Any, params_sharding: dict[str, NamedSharding],
                        param_shapes: dict[str, tuple[int, ...]]) -> Any:
    """Optimizer leaves shaped like their parameter share its sharding; reduced ones (Adafactor's factored
    row/column statistics, counters) are small and replicated."""
    replicated = NamedSharding(mesh, P())

    def rule(path: tuple, leaf: jax.ShapeDtypeStruct) -> NamedSharding:
        for key in path:
            name = getattr(key, "key", None)
            if name in params_sharding and tuple(leaf.shape) == tuple(param_shapes[name]):
                return params_sharding[name]
        return replicated

    return jax.tree_util.tree_map_with_path(rule, abstract_opt_state)


def batch_sharding(mesh: Mesh, rules: ShardingRules) -> NamedSharding:
    """Batches arrive as [accum, micro, L]: the accumulation axis stays whole on every device."""
    return NamedSharding(mesh, P(None, *rules.act_bl))


def check_batch(micro_batch: int, mesh: Mesh) -> None:
    ways = math.prod(mesh.shape[a] for a in BATCH_AXES)
    if micro_batch % ways:
        raise TrainingError(f"micro-batch of {micro_batch} rows (data.batch_size / data.grad_accum) cannot be "
                            f"split over data x fsdp = {ways} devices")


def place(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Host array -> global jax.Array. Every host holds the whole (small, token-id) batch, since a batch is a
    pure function of the step; each device copies out only its own slice, which is correct for any mesh
    layout over any number of hosts."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def rows_sharded(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Pin an activation [B, ...] to the batch split (data x fsdp on B, the rest whole); no-op without a mesh."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(BATCH_AXES, *[None] * (x.ndim - 1))))
