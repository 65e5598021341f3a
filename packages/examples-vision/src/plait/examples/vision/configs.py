"""Training configurations (ml_collections), selected with ``--config NAME``.

Any field can be overridden on the command line: ``--config.learning_rate=3e-3``.
"""

from __future__ import annotations

import ml_collections


def default() -> ml_collections.ConfigDict:
    """The MNIST CNN (plait.nnx): >= 99.0% test accuracy in a few minutes on a laptop CPU."""
    c = ml_collections.ConfigDict()
    c.dataset = "mnist"
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.model = "cnn"  # "cnn" (plait.nnx) or "resnet18" (plait.linen)
    c.num_epochs = 4
    c.per_device_batch_size = 128
    c.eval_batch_size = 1000
    c.optimizer = "adamw"  # "adamw" or "sgd" (SGD with momentum)
    c.learning_rate = 3e-3
    c.momentum = 0.9
    c.weight_decay = 1e-4
    c.warmup_epochs = 0.25
    c.schedule = "cosine"  # "cosine" or "constant"
    c.augment_shift = 2
    c.seed = 0
    c.limit_train_examples = 0  # 0 = use all; tests and smoke runs use a subset
    c.limit_test_examples = 0
    c.workdir = "runs/vision"
    c.checkpoint_every_epochs = 1
    c.keep_checkpoints = 2
    c.progress = True
    return c


def fashion_mnist() -> ml_collections.ConfigDict:
    """Fashion-MNIST with the same CNN: >= 90% test accuracy."""
    c = default()
    c.dataset = "fashion_mnist"
    c.num_epochs = 6
    c.augment_shift = 1
    c.workdir = "runs/vision-fashion"
    return c


def resnet18() -> ml_collections.ConfigDict:
    """A ResNet-18-style network with BatchNorm, written with plait.linen."""
    c = default()
    c.model = "resnet18"
    c.optimizer = "sgd"
    c.learning_rate = 0.05
    c.per_device_batch_size = 64
    c.num_epochs = 2
    c.workdir = "runs/vision-resnet"
    return c


def digits() -> ml_collections.ConfigDict:
    """scikit-learn's 8x8 digits: a tiny, offline configuration for smoke tests."""
    c = default()
    c.dataset = "digits"
    c.num_epochs = 10
    c.per_device_batch_size = 32
    c.eval_batch_size = 297
    c.augment_shift = 0
    c.warmup_epochs = 0.0
    c.workdir = "runs/vision-digits"
    return c


CONFIGS = {"default": default, "fashion_mnist": fashion_mnist, "resnet18": resnet18, "digits": digits}


def get_config(name: str = "default") -> ml_collections.ConfigDict:
    try:
        return CONFIGS[name]()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}.") from None
