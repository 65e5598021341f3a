"""Token streams for language-model training: encode, pack into windows, split, batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenSplits:
    train: np.ndarray  # int32 1-D token stream
    validation: np.ndarray


def encode_documents(documents: list[str], tokenizer) -> np.ndarray:
    """One stream: ``bos doc eos bos doc eos ...`` as int32."""
    pieces = []
    for doc in documents:
        pieces.append([tokenizer.bos_id, *tokenizer.encode(doc), tokenizer.eos_id])
    return np.fromiter((t for p in pieces for t in p), dtype=np.int32)


def split_stream(tokens: np.ndarray, validation_fraction: float = 0.05) -> TokenSplits:
    """Hold out the tail of the stream (contiguous text, so no leakage between windows)."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    cut = int(len(tokens) * (1.0 - validation_fraction))
    return TokenSplits(tokens[:cut], tokens[cut:])


def pack(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping windows of ``seq_len + 1`` tokens (inputs and shifted targets)."""
    window = seq_len + 1
    n = len(tokens) // window
    if n == 0:
        raise ValueError(
            f"a stream of {len(tokens)} tokens holds no window of {window}; lower seq_len."
        )
    return tokens[: n * window].reshape(n, window)


def pad_batch(sequences: list[list[int]], pad_id: int, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ragged sequences; returns ``(tokens, mask)`` with mask 1 on real tokens."""
    length = length or max(len(s) for s in sequences)
    out = np.full((len(sequences), length), pad_id, np.int32)
    mask = np.zeros((len(sequences), length), np.int32)
    for i, s in enumerate(sequences):
        s = s[:length]
        out[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return out, mask


def batches(
    windows: np.ndarray, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """``{'inputs': (B, L), 'targets': (B, L)}`` batches; deterministic per ``(seed, epoch)``."""
    order = np.random.default_rng([seed, epoch]).permutation(len(windows)) if shuffle else np.arange(len(windows))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        w = windows[order[start : start + batch_size]]
        yield {"inputs": w[:, :-1], "targets": w[:, 1:]}


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of the best context-free model: the loss to beat."""
    counts = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
    p = counts / counts.sum()
    nz = p > 0
    return float(-(p[nz] * np.log(p[nz])).sum())


def batch_at(windows: np.ndarray, batch_size: int, step: int, *, seed: int) -> dict[str, np.ndarray]:
    """The training batch of ``step``: epochs of shuffled windows, addressable by step.

    Random access (rather than an iterator) makes a resumed run see exactly the batches
    an uninterrupted one would.
    """
    per_epoch = len(windows) // batch_size
    if per_epoch == 0:
        raise ValueError(f"{len(windows)} windows hold no batch of {batch_size}; lower batch_size.")
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(len(windows))
    w = windows[order[index * batch_size : (index + 1) * batch_size]]
    return language_model_batch(w)


def language_model_batch(windows: np.ndarray, pad_id: int | None = None) -> dict[str, np.ndarray]:
    """``inputs``, ``targets`` (shifted by one), ``positions`` and loss ``weights`` of windows.

    Example:
        >>> b = language_model_batch(np.array([[5, 6, 7]]))
        >>> b["inputs"].tolist(), b["targets"].tolist(), b["positions"].tolist()
        ([[5, 6]], [[6, 7]], [[0, 1]])
    """
    inputs, targets = windows[:, :-1], windows[:, 1:]
    positions = np.broadcast_to(np.arange(inputs.shape[1], dtype=np.int32), inputs.shape).copy()
    weights = np.ones(targets.shape, np.float32)
    if pad_id is not None:
        weights *= (targets != pad_id) & (inputs != pad_id)
        positions = np.where(inputs != pad_id, positions, -1).astype(np.int32)
    return {"inputs": inputs.astype(np.int32), "targets": targets.astype(np.int32), "positions": positions, "weights": weights}
