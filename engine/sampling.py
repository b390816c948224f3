"""Logits -> (confidence, token) for masked positions, in the reference order: temperature, top-p, top-k.

Each confidence rule is one small function; CONFIDENCE maps an algorithm name to its rule. Everything runs in
the logits' dtype, as the reference does (it matters for bf16 bit-parity).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Added to probabilities before the log in the entropy rule, exactly as the reference does.
ENTROPY_EPS = 1e-10


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass exceeds top_p (the first always stays)."""
    sorted_logits, sorted_ids = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    remove_sorted = cumulative > top_p
    remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, sorted_ids, remove_sorted)
    return logits.masked_fill(remove, torch.finfo(logits.dtype).min)


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    top_k = min(top_k, logits.shape[-1])
    kth = torch.topk(logits, top_k)[0][..., -1, None]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


def filtered_probs(logits: torch.Tensor, temperature: float, top_p: float | None,
                   top_k: int | None) -> torch.Tensor:
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    return torch.softmax(logits, dim=-1)


def pick_tokens(probs: torch.Tensor, temperature: float,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability of the chosen token, chosen token): a draw when temperature > 0, else the argmax."""
    if temperature > 0:
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return torch.gather(probs, -1, tokens[:, None]).squeeze(-1), tokens
    return probs.max(dim=-1)


def margin_confidence(probs: torch.Tensor, chosen_prob: torch.Tensor) -> torch.Tensor:
    top2 = torch.topk(probs, 2, dim=-1).values
    return top2[:, 0] - top2[:, 1]


def negative_entropy(probs: torch.Tensor, chosen_prob: torch.Tensor) -> torch.Tensor:
    # In place on one vocabulary-sized temporary: the same operations in the same order as sum(p * log(p + eps)).
    terms = probs.add(ENTROPY_EPS).log_().mul_(probs)
    return terms.sum(dim=-1)


def chosen_probability(probs: torch.Tensor, chosen_prob: torch.Tensor) -> torch.Tensor:
    return chosen_prob


ConfidenceRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CONFIDENCE: dict[str, ConfidenceRule] = {
    "origin": chosen_probability,
    "maskgit_plus": chosen_probability,
    "topk_margin": margin_confidence,
    "entropy": negative_entropy,
    # Fast-dLLM's threshold rule compares the chosen token's probability with a fixed bar.
    "threshold": chosen_probability,
}


def sample_tokens(logits: torch.Tensor, alg: str, temperature: float = 0.0, top_p: float | None = None,
                  top_k: int | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, V) logits -> (confidence (N,), token (N,)) under the algorithm's confidence rule."""
    probs = filtered_probs(logits, temperature, top_p, top_k)
    chosen_prob, tokens = pick_tokens(probs, temperature, generator)
    return CONFIDENCE[alg](probs, chosen_prob), tokens
