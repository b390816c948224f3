"""The CoDA model: a Qwen3 decoder stack with fully bidirectional attention, read top to bottom.

Module and parameter names equal the HF Qwen3 / CoDA names (`model.layers.0.self_attn.q_proj.weight`, ...), so a
checkpoint maps onto this module tree one to one. No sampling and no I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .cache import KVCache
from .config import ModelConfig
from .errors import Cancelled

StopCheck = Callable[[], bool]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 and cast back before the weight, as Qwen3 does: this order matters for bf16 parity.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """cos/sin of shape (L, head_dim) for rotate-half RoPE; angles in fp32, then cast to the activations' dtype."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]  # (L, head_dim/2)
    angles = torch.cat((angles, angles), dim=-1)  # (L, head_dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


# y = layer(rows) for (T, in) rows: one product, or fixed-shape ones (in_row_chunks) for batch invariance.
Linear = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Window:
    """One canvas's share of a pass: its (B, W) ids sitting at canvas positions [start, start + W), or at
    `positions` (W ascending canvas positions from `start` on, not necessarily adjacent), the cache they are
    written into and attend over, and the window's columns `rows` whose states are wanted."""

    ids: torch.Tensor
    cache: KVCache
    start: int
    rows: slice = field(default_factory=lambda: slice(None))
    positions: torch.Tensor | None = None

    def asking(self) -> range:
        return range(*self.rows.indices(self.ids.shape[1]))

    def canvas_positions(self) -> torch.Tensor:
        """(W,) the canvas position of each column."""
        if self.positions is not None:
            return self.positions
        return torch.arange(self.start, self.start + self.ids.shape[1], device=self.ids.device)

    @property
    def end(self) -> int:
        """One past the last canvas position the window holds."""
        return int(self.positions[-1]) + 1 if self.positions is not None else self.start + self.ids.shape[1]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        q_dim, kv_dim = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, q_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, kv_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, kv_dim, bias=False)
        self.o_proj = nn.Linear(q_dim, config.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, windows: Sequence[Window], layer: int,
                asking: torch.Tensor | None, linear: Linear) -> torch.Tensor:
        """(T, hidden) normed tokens of every window, packed -> the attention output of the tokens `asking` (flat
        positions; None: all). Every token's keys and values are written into its window's cache, at its true
        position; each window's queries attend over its whole cached canvas, with the shapes it has alone."""
        heads, kv_heads, head_dim = self.num_heads, self.num_kv_heads, self.head_dim
        h_asking = h if asking is None else h[asking]
        q = self.q_norm(linear(self.q_proj, h_asking).view(-1, heads, head_dim))
        k = self.k_norm(linear(self.k_proj, h).view(-1, kv_heads, head_dim))
        v = linear(self.v_proj, h).view(-1, kv_heads, head_dim)
        q = apply_rope(q, *((cos, sin) if asking is None else (cos[asking], sin[asking])))
        k = apply_rope(k, cos, sin)
        outputs, token, query = [], 0, 0
        for window in windows:
            batch, width = window.ids.shape
            asked = width if asking is None else len(window.asking())
            keys, values = window.cache.keys[layer], window.cache.values[layer]  # (B, kv_heads, canvas, head_dim)
            at = slice(window.start, window.end) if window.positions is None else window.positions
            keys[:, :, at] = k[token:token + batch * width].unflatten(0, (batch, width)).transpose(1, 2)
            values[:, :, at] = v[token:token + batch * width].unflatten(0, (batch, width)).transpose(1, 2)
            q_window = q[query:query + batch * asked].view(batch, asked, heads, head_dim).transpose(1, 2)
            # Every position attends to every other one: the canvas is denoised as a whole, not left to right.
            out = F.scaled_dot_product_attention(q_window, keys, values, is_causal=False,
                                                 enable_gqa=heads != kv_heads)
            outputs.append(out.transpose(1, 2).reshape(batch * asked, heads * head_dim))
            token, query = token + batch * width, query + batch * asked
        return linear(self.o_proj, torch.cat(outputs))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, linear: Linear) -> torch.Tensor:
        return linear(self.down_proj, F.silu(linear(self.gate_proj, x)) * linear(self.up_proj, x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, windows: Sequence[Window], layer: int,
                asking: torch.Tensor | None, linear: Linear) -> torch.Tensor:
        """The block's output at the packed tokens `asking` (None: all); every token's keys and values are cached."""
        x = (x if asking is None else x[asking]) + self.self_attn(self.input_layernorm(x), cos, sin, windows, layer,
                                                                  asking, linear)
        return x + self.mlp(self.post_attention_layernorm(x), linear)


class Backbone(nn.Module):
    """Embeddings, the decoder blocks and the final norm: HF's `model.*` subtree."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


def in_row_chunks(layer: nn.Module, rows: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """layer(rows) for (T, in) rows, as products of exactly `chunk` rows each (the last padded with zeros); None:
    one product. A BLAS picks its blocking, and with it the order of a row's sums, by the shape of the product:
    fixed shapes make every row's result independent of the others."""
    if chunk is None or rows.shape[0] == 0:
        return layer(rows)
    padding = -rows.shape[0] % chunk
    padded = F.pad(rows, (0, 0, 0, padding)) if padding else rows
    return torch.cat([layer(part) for part in padded.split(chunk)])[:rows.shape[0]]


class CodaModel(nn.Module):
    """Backbone plus a separate `lm_head`; `forward` returns hidden states, `logits` projects chosen ones."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    @property
    def compute_dtype(self) -> torch.dtype:  # the embeddings': linear layers may hold int8 weights

        return self.model.embed_tokens.weight.dtype

    def forward(self, windows: Sequence[Window], row_chunk: int | None = None,
                should_stop: StopCheck | None = None) -> list[torch.Tensor]:
        """One forward pass over one or more canvases' windows -> each window's (B, len(rows), hidden) final-normed
        states. Every window's tokens go through the linear layers as rows of one matrix, so the weights are read
        once for all of them; attention runs per canvas over its own cache. A whole canvas (start 0, rows all)
        over a fresh cache is the plain forward pass. The last layer computes only the rows asked for: the
        others' keys and values are all that later passes read.

        `row_chunk`: products of exactly that many rows (in_row_chunks), so a window's states never depend on what
        else shares the pass; None: one product per layer. `should_stop` is asked between layers, since a pass over
        a long canvas is seconds on a CPU (raises Cancelled; the caches' windows are then incomplete)."""
        for window in windows:
            if window.start < 0 or window.end > window.cache.length:
                raise ValueError(f"positions [{window.start}, {window.end}) lie outside the cached canvas of "
                                 f"{window.cache.length}")
        device = windows[0].ids.device
        x = self.model.embed_tokens(torch.cat([window.ids.reshape(-1) for window in windows]))  # (T, hidden)
        tables = [rope_tables(w.canvas_positions(), self.config.head_dim, self.config.rope_theta, x.dtype)
                  for w in windows]
        cos = torch.cat([c.repeat(w.ids.shape[0], 1) for w, (c, _) in zip(windows, tables)])[:, None]
        sin = torch.cat([s.repeat(w.ids.shape[0], 1) for w, (_, s) in zip(windows, tables)])[:, None]
        asking = _asking_index(windows, device)

        def linear(layer: nn.Module, rows: torch.Tensor) -> torch.Tensor:
            return in_row_chunks(layer, rows, row_chunk)

        last = len(self.model.layers) - 1
        for index, block in enumerate(self.model.layers):
            if index and should_stop is not None and should_stop():
                raise Cancelled(0)
            x = block(x, cos, sin, windows, index, asking if index == last else None, linear)
        states = self.model.norm(x).split([w.ids.shape[0] * len(w.asking()) for w in windows])
        return [s.view(w.ids.shape[0], len(w.asking()), x.shape[-1]) for w, s in zip(windows, states)]

    def whole(self, input_ids: torch.Tensor) -> Window:
        """A window covering the whole (B, L) canvas, over a fresh cache."""
        cache = KVCache.allocate(self.config, input_ids.shape[0], input_ids.shape[1], input_ids.device,
                                 self.compute_dtype)
        return Window(input_ids, cache, 0)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, vocab) raw logits of a whole canvas; position i scores token i+1 (the shift is the
        sampler's job)."""
        return self.lm_head(self([self.whole(input_ids)])[0])

    def shift_keys(self, keys: torch.Tensor, delta: int) -> torch.Tensor:
        """(..., head_dim) cached keys rotated as if their tokens sat `delta` positions later: RoPE turns each
        pair of dimensions by an angle proportional to the position, and turns compose."""
        if delta == 0:
            return keys
        # A fill on the device, not torch.tensor([delta]): a copy from pageable host memory would wait for the GPU
        # (twice a layer when a reused cache is shifted).
        positions = torch.full((1,), delta, device=keys.device)
        cos, sin = rope_tables(positions, self.config.head_dim, self.config.rope_theta, keys.dtype)
        return apply_rope(keys, cos, sin)


def _asking_index(windows: Sequence[Window], device: torch.device) -> torch.Tensor | None:
    """The packed tokens whose states a pass returns (flat positions); None when every token is asked for."""
    if all(len(w.asking()) == w.ids.shape[1] for w in windows):
        return None
    asking, offset = [], 0
    for window in windows:
        batch, width = window.ids.shape
        asking += [offset + row * width + position for row in range(batch) for position in window.asking()]
        offset += batch * width
    return torch.tensor(asking, dtype=torch.long, device=device)
