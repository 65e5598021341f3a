"""The two example models and a common functional view of them.

- :class:`CNN` is written with ``plait.nnx`` (object-oriented, mutable modules).
- :class:`ResNet18` is written with ``plait.linen`` (dataclass modules, init/apply).

The training loop sees both through :class:`FunctionalModel`: ``init`` returns
``(params, model_state)`` pytrees and ``apply`` is a pure function, so the same jitted,
data-parallel step and the same checkpoints serve both APIs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from plait import linen as nn
from plait import nnx

# --------------------------------------------------------------------------- nnx CNN


class CNN(nnx.Module):
    """Two 3x3 conv layers with average pooling, then two dense layers.

    Example:
        >>> from plait import nnx
        >>> import jax.numpy as jnp
        >>> model = CNN(num_classes=10, image_shape=(28, 28, 1), rngs=nnx.Rngs(0))
        >>> model(jnp.zeros((2, 28, 28, 1))).shape
        (2, 10)
    """

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int],
        *,
        features: tuple[int, int] = (32, 64),
        hidden: int = 256,
        rngs: nnx.Rngs,
    ):
        height, width, channels = image_shape
        self.conv1 = nnx.Conv(channels, features[0], kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(features[0], features[1], kernel_size=(3, 3), rngs=rngs)
        flat = (height // 4) * (width // 4) * features[1]
        self.hidden = nnx.Linear(flat, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.head(nnx.relu(self.hidden(x)))


# --------------------------------------------------------------------------- linen ResNet


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        y = nn.Conv(self.features, (3, 3), strides=self.strides, use_bias=False)(x)
        y = nn.relu(norm("bn1")(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
        y = norm("bn2")(y)
        if x.shape != y.shape:
            x = nn.Conv(self.features, (1, 1), strides=self.strides, use_bias=False,
                        name="projection")(x)
            x = norm("bn_projection")(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """ResNet-18 layout (4 stages of 2 residual blocks) sized for small grey images.

    ``width`` is the first stage's channel count (64 in the ImageNet model); the stem is a
    single 3x3 convolution because the inputs are 28x28.
    """

    num_classes: int
    width: int = 16
    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(self.width, (3, 3), use_bias=False, name="stem")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn_stem")(x))
        for stage, blocks in enumerate(self.stage_sizes):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = ResidualBlock(self.width * 2**stage, strides)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


# --------------------------------------------------------------------------- functional view


@dataclasses.dataclass(frozen=True)
class FunctionalModel:
    """``init(key, sample) -> (params, model_state)``; ``apply(params, state, x, train)``.

    ``apply`` returns ``(logits, new_model_state)``; model_state holds non-trainable
    variables such as BatchNorm statistics (empty for the CNN).
    """

    name: str
    init: Callable[[jax.Array, jax.Array], tuple[Any, Any]]
    apply: Callable[[Any, Any, jax.Array, bool], tuple[jax.Array, Any]]


def nnx_cnn(num_classes: int, image_shape: Sequence[int]) -> FunctionalModel:
    abstract = nnx.eval_shape(lambda: CNN(num_classes, image_shape, rngs=nnx.Rngs(0)))
    graphdef, _, _ = nnx.split(abstract, nnx.Param, ...)

    def init(key: jax.Array, sample: jax.Array) -> tuple[Any, Any]:
        del sample
        model = CNN(num_classes, image_shape, rngs=nnx.Rngs(params=key))
        _, params, rest = nnx.split(model, nnx.Param, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def apply(params, state, x, train):
        del train  # the CNN has no train/eval difference
        model = nnx.merge(graphdef, params, state)
        return model(x), state

    return FunctionalModel("cnn (plait.nnx)", init, apply)


def linen_resnet18(num_classes: int) -> FunctionalModel:
    module = ResNet18(num_classes)

    def init(key: jax.Array, sample: jax.Array) -> tuple[Any, Any]:
        variables = module.init(key, sample, train=False)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def apply(params, state, x, train):
        variables = {"params": params, **state}
        if train:
            logits, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
            return logits, {"batch_stats": updates["batch_stats"]}
        return module.apply(variables, x, train=False), state

    return FunctionalModel("resnet18 (plait.linen)", init, apply)


def build_model(name: str, num_classes: int, image_shape: Sequence[int]) -> FunctionalModel:
    if name == "cnn":
        return nnx_cnn(num_classes, image_shape)
    if name == "resnet18":
        return linen_resnet18(num_classes)
    raise ValueError(f"unknown model {name!r}; choose 'cnn' (plait.nnx) or 'resnet18' (plait.linen).")
