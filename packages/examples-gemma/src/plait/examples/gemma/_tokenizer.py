"""Tokenizers: a SentencePiece BPE trained locally (cached) and a byte-level fallback.

Both round-trip any text exactly: the SentencePiece model uses identity normalization,
keeps whitespace as is and falls back to bytes for anything outside its vocabulary.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

import jax
import numpy as np


class Tokenizer(Protocol):
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes shifted by 3: ids 0/1/2 are pad/bos/eos, 3..258 are bytes.

    Example:
        >>> tok = ByteTokenizer()
        >>> tok.decode(tok.encode("to be")) == "to be"
        True
    """

    pad_id, bos_id, eos_id = 0, 1, 2
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        return bytes(i - 3 for i in ids if 3 <= i < self.vocab_size).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """A SentencePiece model: ``pad=0, bos=1, eos=2, unk=3``, byte fallback."""

    def __init__(self, model_file: str | os.PathLike):
        import sentencepiece as spm

        self.model_file = Path(model_file)
        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.vocab_size = self._sp.get_piece_size()
        self.pad_id, self.bos_id, self.eos_id = self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) not in (self.pad_id, self.bos_id, self.eos_id)])

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))


def train_sentencepiece(
    documents: list[str], vocab_size: int, model_prefix: str | os.PathLike,
    *, max_sentences: int = 200_000,
) -> SentencePieceTokenizer:
    """Train a BPE model on ``documents``; writes ``{model_prefix}.model`` atomically."""
    import sentencepiece as spm

    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=prefix.parent) as tmp:
        corpus = Path(tmp) / "corpus.txt"
        # One training sentence per line; newlines inside the text are encoded through the
        # dedicated "\n" symbol at encode time.
        corpus.write_text("\n".join(line for doc in documents for line in doc.splitlines() if line.strip()))
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "sp"), vocab_size=vocab_size,
            model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False, split_digits=True,
            allow_whitespace_only_pieces=True, user_defined_symbols=["\n"],
            pad_id=0, bos_id=1, eos_id=2, unk_id=3, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, num_threads=2, minloglevel=2,
        )
        os.replace(Path(tmp) / "sp.model", prefix.with_suffix(".model"))
    return SentencePieceTokenizer(prefix.with_suffix(".model"))


def load_or_train_tokenizer(
    documents: list[str], vocab_size: int, cache_dir: str | os.PathLike, fingerprint: str,
) -> SentencePieceTokenizer:
    """The cached model for (corpus fingerprint, vocab size), trained on first use.

    With several JAX processes, only process 0 trains (or reads its cache) and sends the
    model's bytes to the others, which store them in their own cache: every process
    tokenizes with the same model, even when their cache directories are not shared and
    training would not be reproducible across machines.
    """
    model = Path(cache_dir) / f"spm-bpe-{vocab_size}-{fingerprint}.model"
    if jax.process_index() == 0 and not model.exists():
        train_sentencepiece(documents, vocab_size, model.with_suffix(""))
    if jax.process_count() > 1:
        _share_from_process_0(model)
    return SentencePieceTokenizer(model)


def _share_from_process_0(model: Path) -> None:
    """Sends process 0's model file to every other process, which stores it at ``model``."""
    from jax.experimental import multihost_utils

    primary = jax.process_index() == 0
    payload = model.read_bytes() if primary else b""
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(payload))))
    buffer = np.frombuffer(payload, np.uint8) if primary else np.zeros(size, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(buffer), np.uint8).tobytes()
    if not primary and (not model.exists() or model.read_bytes() != received):
        model.parent.mkdir(parents=True, exist_ok=True)
        staged = model.with_suffix(f".tmp-{os.getpid()}")
        staged.write_bytes(received)
        os.replace(staged, model)
