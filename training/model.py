"""Bidirectional Qwen3 in flax nnx, top to bottom: RMSNorm, RoPE, Attention, MLP, Block, Model.

Module and attribute names follow the HF checkpoint (`model.layers.{i}.self_attn.q_proj.weight` is
`layers.{i}.self_attn.q_proj.kernel` here, transposed to [in, out]) so `hf_io` maps weights one to one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from coda_training.attention import attend
from coda_training.config import ModelConfig
from coda_training.sharding import rows_sharded

Array = jax.Array


def _kernel(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
    return nnx.Param(jax.random.normal(rngs.params(), shape, jnp.float32) * std)


class RMSNorm(nnx.Module):
    """x * rsqrt(mean(x^2) + eps) in fp32, cast back to the input dtype, then times the weight (Qwen3)."""

    def __init__(self, dim: int, eps: float):
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return normed.astype(x.dtype) * self.weight[...].astype(x.dtype)


class Linear(nnx.Module):
    """Bias-free projection with an [in, out] kernel; the matmul runs in the activation dtype."""

    def __init__(self, d_in: int, d_out: int, std: float, rngs: nnx.Rngs):
        self.kernel = _kernel(rngs, (d_in, d_out), std)

    def __call__(self, x: Array) -> Array:
        return x @ self.kernel[...].astype(x.dtype)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[Array, Array]:
    """cos, sin of shape [L, head_dim] for positions 0..L-1, computed in fp32 (positions lose digits in bf16)."""
    inv_freq = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = jnp.arange(seq_len, dtype=jnp.float32)[:, None] * inv_freq[None, :]  # [L, H/2]
    angles = jnp.concatenate([angles, angles], axis=-1)  # [L, H]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """Rotate-half (non-interleaved) RoPE on x [B, L, N, H], as HF Qwen3 does."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos[None, :, None, :].astype(x.dtype), sin[None, :, None, :].astype(x.dtype)
    return x * cos + rotated * sin


class Attention(nnx.Module):
    """Full (non-causal) GQA attention with per-head q/k RMSNorm before RoPE; segments never see each other."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, h = cfg.hidden_size, cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, h
        self.q_proj = Linear(d, cfg.num_heads * h, cfg.init_std, rngs)
        self.k_proj = Linear(d, cfg.num_kv_heads * h, cfg.init_std, rngs)
        self.v_proj = Linear(d, cfg.num_kv_heads * h, cfg.init_std, rngs)
        self.o_proj = Linear(cfg.num_heads * h, d, cfg.init_std, rngs)
        self.q_norm = RMSNorm(h, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(h, cfg.rms_norm_eps)
        self.kind, self.block_size, self.compute_dtype = cfg.attention, cfg.attention_block, cfg.compute_dtype

    def __call__(self, x: Array, cos: Array, sin: Array, segment_ids: Array | None, mesh: Mesh | None) -> Array:
        b, l, _ = x.shape
        h = self.head_dim
        q = apply_rope(self.q_norm(self.q_proj(x).reshape(b, l, self.num_heads, h)), cos, sin)
        k = apply_rope(self.k_norm(self.k_proj(x).reshape(b, l, self.num_kv_heads, h)), cos, sin)
        v = self.v_proj(x).reshape(b, l, self.num_kv_heads, h)
        out = attend(q, k, v, segment_ids, self.kind, self.block_size, self.compute_dtype, mesh)
        return self.o_proj(out.reshape(b, l, self.num_heads * h))


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Linear(d, f, cfg.init_std, rngs)
        self.up_proj = Linear(d, f, cfg.init_std, rngs)
        self.down_proj = Linear(f, d, cfg.init_std, rngs)

    def __call__(self, x: Array) -> Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    """Pre-norm residual block: h + Attn(norm(h)), then h + MLP(norm(h))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x: Array, cos: Array, sin: Array, segment_ids: Array | None, mesh: Mesh | None) -> Array:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, segment_ids, mesh)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nnx.Module):
    """input ids [B, L] (+ optional segment ids) -> fp32 logits [B, L, V]; logits[i] predicts token i+1."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_tokens = nnx.Param(
            jax.random.normal(rngs.params(), (cfg.vocab_size, cfg.hidden_size), jnp.float32) * cfg.init_std)
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, cfg.init_std, rngs)  # untied, as in CoDA

    def __call__(self, input_ids: Array, segment_ids: Array | None = None, mesh: Mesh | None = None) -> Array:
        return self.lm_head(self.hidden_states(input_ids, segment_ids, mesh)).astype(jnp.float32)

    def hidden_states(self, input_ids: Array, segment_ids: Array | None = None, mesh: Mesh | None = None) -> Array:
        """The normed final hidden states [B, L, D] in the compute dtype: what the lm_head (or the chunked
        loss, which never builds all logits at once) multiplies.

        With a mesh, the residual stream is pinned to the batch split at every layer boundary: under FSDP the
        weights are sharded on D too, and without the pin XLA may keep activations replicated and gather the
        batch instead of the weights (research/jax-scale.md section 5: 76 vs 19 GiB on 8 CPU devices).
        """
        dtype = jnp.dtype(self.cfg.compute_dtype)
        x = jnp.take(self.embed_tokens[...], input_ids, axis=0).astype(dtype)  # [B, L, D]
        x = rows_sharded(x, mesh)
        cos, sin = rope_tables(input_ids.shape[1], self.cfg.head_dim, self.cfg.rope_theta)
        # Packed documents: a token attends only within its segment. Positions stay 0..L-1 for the whole
        # row; RoPE scores depend only on relative offsets, so a per-document restart would change nothing.
        if self.cfg.scan_layers:
            x = self._scan_layers(x, cos, sin, segment_ids, mesh)
        else:
            def run_block(block: Block, h: Array) -> Array:
                return rows_sharded(block(h, cos, sin, segment_ids, mesh), mesh)

            run = nnx.remat(run_block) if self.cfg.remat else run_block
            for block in self.layers:
                x = run(block, x)
        return self.norm(x)

    def _scan_layers(self, x: Array, cos: Array, sin: Array, segment_ids: Array | None, mesh: Mesh | None) -> Array:
        """One compiled block applied num_layers times by lax.scan, so compile time does not grow with depth.

        Weights stay stored per layer (the HF names, in checkpoints and exports); the step stacks them here,
        already cast to the compute dtype, which every block casts to anyway, so the result equals the Python
        loop's (up to fusion rounding) and the stacked copy costs half the fp32 weights (bf16), sharded like them.
        """
        block_def = nnx.graphdef(self.layers[0])
        stacked = jax.tree.map(lambda *ws: jnp.stack([w.astype(x.dtype) for w in ws]),
                               *[nnx.state(block) for block in self.layers])

        def body(h: Array, block_state: nnx.State) -> tuple[Array, None]:
            out = nnx.merge(block_def, block_state)(h, cos, sin, segment_ids, mesh)
            return rows_sharded(out, mesh), None

        # prevent_cse is only needed outside loops (jax.checkpoint docs); inside scan it blocks fusions.
        step = jax.checkpoint(body, prevent_cse=False) if self.cfg.remat else body
        x, _ = jax.lax.scan(step, x, stacked)
        return x


def abstract_model(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """Graph and parameter shapes without allocating anything (nnx.eval_shape)."""
    return nnx.split(nnx.eval_shape(lambda: Model(cfg, nnx.Rngs(0))))


def init_params(cfg: ModelConfig, seed: int) -> dict[str, Array]:
    """Random fp32 parameters as a flat {name: array} dict (see `flatten`)."""
    _, state = nnx.split(Model(cfg, nnx.Rngs(seed)))
    return flatten(state)


def flatten(state: nnx.State) -> dict[str, Array]:
    """nnx state -> {"layers.0.self_attn.q_proj.kernel": array}: one string key per tensor, for Orbax and HF."""
    return {".".join(str(k) for k in path): leaf for path, leaf in _flat_items(nnx.to_pure_dict(state))}


def _flat_items(tree: dict, prefix: tuple = ()) -> list[tuple[tuple, Array]]:
    items = []
    for key, value in tree.items():
        if isinstance(value, dict):
            items.extend(_flat_items(value, prefix + (key,)))
        else:
            items.append((prefix + (key,), value))
    return items


def unflatten(params: dict[str, Array]) -> dict:
    """Inverse of `flatten`: digit segments become the int keys nnx.List uses."""
    nested: dict = {}
    for name, value in params.items():
        node = nested
        *parents, leaf = [int(p) if p.isdigit() else p for p in name.split(".")]
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def bind(graphdef: nnx.GraphDef, abstract_state: nnx.State, params: dict[str, Array]) -> Model:
    """A Model whose weights are `params`; cheap enough to call inside a jitted function."""
    # replace_by_pure_dict writes in place: copy first so the shared abstract state never holds tracers.
    state = jax.tree.map(lambda x: x, abstract_state)
    nnx.replace_by_pure_dict(state, unflatten(params))
    return nnx.merge(graphdef, state)


def forward(graphdef: nnx.GraphDef, abstract_state: nnx.State, params: dict[str, Array], input_ids: Array,
            segment_ids: Array | None = None, mesh: Mesh | None = None) -> Array:
    """Pure-function form of Model.__call__ for jax.jit and jax.grad."""
    return bind(graphdef, abstract_state, params)(input_ids, segment_ids, mesh)


def forward_hidden(graphdef: nnx.GraphDef, abstract_state: nnx.State, params: dict[str, Array], input_ids: Array,
                   segment_ids: Array | None = None, mesh: Mesh | None = None) -> Array:
    """Pure-function form of Model.hidden_states: [B, L, D] before the lm_head."""
    return bind(graphdef, abstract_state, params).hidden_states(input_ids, segment_ids, mesh)
