"""Model and training configurations as frozen dataclasses, with named presets.

``ModelConfig`` describes one member of the Gemma family (Gemma 2 style soft-capping,
Gemma 3 style query/key norms and local:global patterns are switches on it).
``TrainConfig`` holds everything the training loop reads, including the model.
``get_config(name)`` returns a preset; ``apply_overrides`` applies command-line style
``model.num_layers=2`` assignments with type checks (through ml_collections).
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

import ml_collections

from ._errors import ConfigError

LOCAL = "local"
GLOBAL = "global"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The shape and numerics of a Gemma-family decoder.

    Attributes:
      vocab_size: number of token ids (the embedding table's rows).
      num_layers: number of transformer blocks.
      embed_dim: model width (``d_model``).
      hidden_dim: width of the gated GeLU MLP.
      num_heads: query heads.
      num_kv_heads: key/value heads (1 = multi-query, < num_heads = grouped-query).
      head_dim: width of one head.
      attention_pattern: layer kinds (``"local"`` or ``"global"``), repeated cyclically
        over the layers: Gemma 3's 5:1 is ``("local",) * 5 + ("global",)``.
      sliding_window: how many positions a local layer sees (itself included).
      rope_base_local / rope_base_global: rotary base frequency per layer kind.
      rope_scale_global: position scaling of global layers (Gemma 3 4B+: 8.0).
      attn_logit_softcap: ``c * tanh(logits / c)`` on attention logits (Gemma 2), or None.
      final_logit_softcap: the same on the output logits (Gemma 2), or None.
      use_qk_norm: RMSNorm on queries and keys per head (Gemma 3).
      use_post_attn_norm / use_post_ffw_norm: norms on the residual branches' outputs
        (Gemma 2 and 3).
      query_pre_attn_scalar: queries are multiplied by this; None means ``head_dim**-0.5``.
      dtype: compute dtype (``"float32"`` or ``"bfloat16"``); norms, softmax and the
        loss always run in float32.
      param_dtype: dtype the parameters are stored in.
    """

    vocab_size: int = 2048
    num_layers: int = 4
    embed_dim: int = 256
    hidden_dim: int = 768
    num_heads: int = 4
    num_kv_heads: int = 1
    head_dim: int = 64
    attention_pattern: tuple[str, ...] = (LOCAL, LOCAL, LOCAL, GLOBAL)
    sliding_window: int | None = 64
    rope_base_local: float = 10_000.0
    rope_base_global: float = 1_000_000.0
    rope_scale_global: float = 1.0
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    use_qk_norm: bool = True
    use_post_attn_norm: bool = True
    use_post_ffw_norm: bool = True
    query_pre_attn_scalar: float | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "attention_pattern", tuple(self.attention_pattern))
        problems = []
        for name in ("vocab_size", "num_layers", "embed_dim", "hidden_dim", "num_heads", "num_kv_heads", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if not problems and self.num_heads % self.num_kv_heads:
            problems.append(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads}) "
                "so that query heads share key/value heads in equal groups"
            )
        if not problems and self.head_dim % 2:
            problems.append(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        unknown = [kind for kind in self.attention_pattern if kind not in (LOCAL, GLOBAL)]
        if not self.attention_pattern or unknown:
            problems.append(f"attention_pattern must be a non-empty tuple of 'local'/'global', got {self.attention_pattern!r}")
        if LOCAL in self.attention_pattern and (self.sliding_window is None or self.sliding_window < 1):
            problems.append(f"local layers need sliding_window >= 1, got {self.sliding_window!r}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                problems.append(f"{name} must be 'float32', 'bfloat16' or 'float16', got {getattr(self, name)!r}")
        if problems:
            raise ConfigError("Invalid ModelConfig:\n  " + "\n  ".join(problems))

    @property
    def layer_types(self) -> tuple[str, ...]:
        """The kind of every layer, the pattern repeated (and cut) to ``num_layers``."""
        pattern = self.attention_pattern
        return tuple(pattern[i % len(pattern)] for i in range(self.num_layers))

    @property
    def query_scale(self) -> float:
        return self.query_pre_attn_scalar if self.query_pre_attn_scalar is not None else self.head_dim**-0.5

    def num_params(self) -> int:
        """Parameter count from the shapes alone (embedding counted once: it is tied)."""
        d, h = self.embed_dim, self.head_dim
        attention = d * h * (self.num_heads * 2 + self.num_kv_heads * 2)
        norms = d * (2 + self.use_post_attn_norm + self.use_post_ffw_norm) + (2 * h if self.use_qk_norm else 0)
        mlp = 3 * d * self.hidden_dim
        return self.vocab_size * d + self.num_layers * (attention + mlp + norms) + d


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything ``train`` reads. ``model`` is a nested :class:`ModelConfig`.

    Attributes:
      tokenizer: ``"bpe"`` (SentencePiece trained on the corpus, ``model.vocab_size``
        pieces) or ``"byte"`` (259 ids; ``model.vocab_size`` must be >= 259).
      seq_len: tokens per training window.
      batch_size: windows per step (global, across devices).
      num_steps: optimizer steps; the cosine schedule decays over them.
      learning_rate / min_learning_ratio / warmup_steps: linear warmup to the peak, then
        cosine decay to ``peak * min_learning_ratio``.
      weight_decay: AdamW decay, applied to matrices only (not to norm scales).
      beta1 / beta2: Adam moments.
      grad_clip_norm: global-norm gradient clipping (0 disables it).
      eval_every / eval_batches: validation cadence and size.
      checkpoint_every / keep_checkpoints: checkpoint cadence and retention.
      log_every: how often the progress bar's loss is refreshed (steps).
      max_train_minutes: stop early (and checkpoint) once this much time has passed;
        0 means no limit.
      sample_tokens: tokens sampled from a prompt at the end of training (0: none).
      mesh_data / mesh_fsdp / mesh_tensor: device mesh shape; -1 means "all remaining".
      seed: parameter init and data order.
      validation_fraction: tail of the token stream held out for validation.
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    tokenizer: str = "bpe"
    seq_len: int = 128
    batch_size: int = 32
    num_steps: int = 1000
    learning_rate: float = 3e-3
    min_learning_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip_norm: float = 1.0
    eval_every: int = 250
    eval_batches: int = 16
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    log_every: int = 10
    max_train_minutes: float = 0.0
    sample_tokens: int = 200
    mesh_data: int = -1
    mesh_fsdp: int = 1
    mesh_tensor: int = 1
    seed: int = 0
    validation_fraction: float = 0.05

    def __post_init__(self):
        if self.tokenizer not in ("bpe", "byte"):
            raise ConfigError(f"TrainConfig.tokenizer must be 'bpe' or 'byte', got {self.tokenizer!r}.")
        if self.tokenizer == "byte" and self.model.vocab_size < 259:
            raise ConfigError(
                f"The byte tokenizer needs model.vocab_size >= 259, got {self.model.vocab_size}.\n"
                "Fix: --config.model.vocab_size=259 (or use --config.tokenizer=bpe)."
            )
        for name in ("seq_len", "batch_size", "num_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}.")


def tiny() -> TrainConfig:
    """4 layers, width 256, MQA, Gemma 3 style (3 local : 1 global, qk-norm): CPU minutes."""
    return TrainConfig(
        model=ModelConfig(), seq_len=128, batch_size=16, num_steps=400, warmup_steps=20, learning_rate=3e-3,
        eval_every=50, eval_batches=8, checkpoint_every=100, max_train_minutes=9.0,
    )


def small() -> TrainConfig:
    """6 layers, width 384, GQA (6 heads, 2 kv), Gemma 3 style."""
    model = ModelConfig(
        vocab_size=4096, num_layers=6, embed_dim=384, hidden_dim=1536, num_heads=6, num_kv_heads=2,
        head_dim=64, attention_pattern=(LOCAL, LOCAL, GLOBAL), sliding_window=128,
    )
    return TrainConfig(model=model, seq_len=256, batch_size=32, num_steps=4000, learning_rate=2e-3)


def default() -> TrainConfig:
    """12 layers, width 768, Gemma 2 style (alternating local/global, soft-capping)."""
    model = ModelConfig(
        vocab_size=8192, num_layers=12, embed_dim=768, hidden_dim=3072, num_heads=12, num_kv_heads=4,
        head_dim=64, attention_pattern=(LOCAL, GLOBAL), sliding_window=256, rope_base_global=10_000.0,
        attn_logit_softcap=50.0, final_logit_softcap=30.0, use_qk_norm=False,
    )
    return TrainConfig(model=model, seq_len=512, batch_size=64, num_steps=20_000, learning_rate=1e-3)


def gemma3_4b() -> TrainConfig:
    """The published Gemma 3 4B text decoder shape (about 3.9B parameters)."""
    model = ModelConfig(
        vocab_size=262_144, num_layers=34, embed_dim=2560, hidden_dim=10_240, num_heads=8, num_kv_heads=4,
        head_dim=256, attention_pattern=(LOCAL,) * 5 + (GLOBAL,), sliding_window=1024,
        rope_base_local=10_000.0, rope_base_global=1_000_000.0, rope_scale_global=8.0, use_qk_norm=True,
        query_pre_attn_scalar=256**-0.5, dtype="bfloat16", param_dtype="bfloat16",
    )
    return TrainConfig(model=model, seq_len=4096, batch_size=64, num_steps=100_000, learning_rate=3e-4)


CONFIGS = {"tiny": tiny, "small": small, "default": default, "gemma3_4b": gemma3_4b}


def get_config(name: str) -> TrainConfig:
    """The preset ``name`` (one of ``CONFIGS``).

    Example:
      >>> get_config("tiny").model.num_layers
      4
    """
    try:
        return CONFIGS[name]()
    except KeyError:
        raise ConfigError(f"Unknown config {name!r}. Known: {', '.join(CONFIGS)}.") from None


def _to_config_dict(config: Any) -> ml_collections.ConfigDict:
    fields = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        fields[field.name] = _to_config_dict(value) if dataclasses.is_dataclass(value) else value
    return ml_collections.ConfigDict(fields)


def _from_config_dict(template: Any, values: ml_collections.ConfigDict) -> Any:
    kwargs = {}
    for field in dataclasses.fields(template):
        value = values[field.name]
        old = getattr(template, field.name)
        if dataclasses.is_dataclass(old):
            value = _from_config_dict(old, value)
        elif isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return type(template)(**kwargs)


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as bfloat16


def apply_overrides(config: TrainConfig, overrides: dict[str, str]) -> TrainConfig:
    """Returns ``config`` with dotted-path overrides applied, type-checked.

    Values are Python literals (``2``, ``1e-3``, ``None``, ``('local', 'global')``) or
    bare words (strings). An int may set a float field; any other type change is an
    error naming the field.

    Example:
      >>> config = apply_overrides(get_config("tiny"), {"model.num_layers": "2", "learning_rate": "1e-3"})
      >>> config.model.num_layers, config.learning_rate
      (2, 0.001)
    """
    tree = _to_config_dict(config)
    for path, text in overrides.items():
        value = _parse_value(text)
        parent = tree
        *heads, leaf = path.split(".")
        try:
            for head in heads:
                parent = parent[head]
            old = parent[leaf]
        except (KeyError, AttributeError, TypeError):
            raise ConfigError(
                f"--config.{path}: no such field. Fields here: {', '.join(sorted(parent.keys()))}."
            ) from None
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            parent[leaf] = value
        except TypeError as err:
            raise ConfigError(
                f"--config.{path}={text}: expected a {type(old).__name__} (currently {old!r}), got "
                f"{type(value).__name__}: {err}"
            ) from None
    try:
        return _from_config_dict(config, tree)
    except ConfigError as err:
        raise ConfigError(f"{err}\n(after applying {overrides})") from None


def describe(config: ModelConfig) -> str:
    """One line: layers, width, heads and parameter count."""
    n = config.num_params()
    scale = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"
    return (
        f"{config.num_layers} layers, d_model {config.embed_dim}, {config.num_heads} heads / "
        f"{config.num_kv_heads} kv x {config.head_dim}, MLP {config.hidden_dim}, vocab {config.vocab_size}, "
        f"{scale} parameters"
    )

