"""Data-parallel training loop with evaluation, metrics, a plot and resumable checkpoints."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from plait import checkpoint as ckpt

from . import _data, _models, _pipeline

LOG_EVERY = 20  # steps between host reads of the training metrics


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    total = max(1, config.num_epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0 if warmup else config.learning_rate, config.learning_rate,
            warmup_steps=warmup, decay_steps=total, end_value=config.learning_rate * 0.01,
        )
    elif config.schedule == "constant":
        lr = config.learning_rate
    else:
        raise ValueError(f"config.schedule={config.schedule!r}; choose 'cosine' or 'constant'.")
    if config.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return optax.chain(
            optax.add_decayed_weights(config.weight_decay),
            optax.sgd(lr, momentum=config.momentum, nesterov=True),
        )
    raise ValueError(f"config.optimizer={config.optimizer!r}; choose 'adamw' or 'sgd'.")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_steps(model: _models.FunctionalModel, tx: optax.GradientTransformation):
    def train_step(state: dict[str, Any], batch: dict[str, jax.Array]):
        def loss_fn(params):
            logits, model_state = model.apply(params, state["model_state"], batch["image"], True)
            return cross_entropy(logits, batch["label"]), (logits, model_state)

        (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"]
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "params": optax.apply_updates(state["params"], updates),
            "model_state": model_state,
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return new_state, {"loss": loss, "accuracy": accuracy}

    def eval_step(state: dict[str, Any], batch: dict[str, jax.Array]):
        logits, _ = model.apply(state["params"], state["model_state"], batch["image"], False)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        correct = jnp.argmax(logits, -1) == batch["label"]
        weight = batch["weight"]  # 0 for padding examples
        return {"loss_sum": (losses * weight).sum(), "correct": (correct * weight).sum(),
                "count": weight.sum()}

    return train_step, eval_step


def _limit(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return (x[:n], y[:n]) if n else (x, y)


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def write_plot(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["test_loss"] for h in history], marker="o", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    ax_acc.plot(epochs, [h["test_accuracy"] for h in history], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, resume: bool = False,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train ``config`` in ``workdir``; returns the final metrics and the history.

    ``resume=True`` continues from the latest checkpoint in ``workdir/checkpoints``.
    ``stop_after_epochs`` ends the run early (used to test that resuming reproduces an
    uninterrupted run exactly).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = _data.load_dataset(config.dataset, config.data_dir)
    train_x, train_y = _limit(dataset.train_images, dataset.train_labels, config.limit_train_examples)
    test_x, test_y = _limit(dataset.test_images, dataset.test_labels, config.limit_test_examples)
    normalization = _pipeline.Normalization.fit(train_x)

    mesh = _pipeline.make_data_mesh()
    batch_size = _pipeline.global_batch_size(config.per_device_batch_size, mesh.size)
    if batch_size > len(train_x):
        raise ValueError(
            f"global batch {batch_size} (per_device_batch_size={config.per_device_batch_size} x "
            f"{mesh.size} devices) exceeds the {len(train_x)} training examples; lower "
            "--config.per_device_batch_size."
        )
    steps_per_epoch = _pipeline.num_batches(len(train_x), batch_size)
    model = _models.build_model(config.model, dataset.num_classes, dataset.image_shape)
    tx = make_optimizer(config, steps_per_epoch)
    replicated = NamedSharding(mesh, PartitionSpec())

    def create_state(key):
        sample = jnp.zeros((1, *dataset.image_shape), jnp.float32)
        params, model_state = model.init(key, sample)
        return {"params": params, "model_state": model_state, "opt_state": tx.init(params),
                "step": jnp.zeros((), jnp.int32)}

    init_key = jax.random.key(config.seed)
    abstract = jax.eval_shape(create_state, init_key)
    state_shardings = jax.tree.map(lambda _: replicated, abstract)
    state = jax.jit(create_state, out_shardings=state_shardings)(init_key)

    manager = ckpt.CheckpointManager(
        workdir / "checkpoints", max_to_keep=config.keep_checkpoints, async_save=True
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume and manager.latest_step() is not None:
        target = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
            state_shardings,
        )
        restored = manager.restore(manager.latest_step(), target={"state": target})
        state = restored["state"]
        meta = manager.metadata(manager.latest_step()).metadata
        history = list(meta.get("history", []))
        start_epoch = int(meta["epoch"])
        print(f"resumed from epoch {start_epoch} (step {int(state['step'])})", flush=True)

    train_step, eval_step = make_steps(model, tx)
    train_step = jax.jit(train_step, donate_argnums=0)
    eval_step = jax.jit(eval_step)

    def evaluate(state) -> dict[str, float]:
        totals = {"loss_sum": 0.0, "correct": 0, "count": 0}
        eval_bs = min(config.eval_batch_size, len(test_x))
        eval_bs -= eval_bs % mesh.size
        for batch in _pipeline.epoch_batches(
            test_x, test_y, eval_bs, seed=0, epoch=0, normalization=normalization,
            shuffle=False, drop_remainder=False,
        ):
            n = len(batch["label"])
            batch["weight"] = np.ones(n, np.float32)
            pad = -n % mesh.size  # pad the last batch so it splits evenly over devices
            if pad:
                batch = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)])
                         for k, v in batch.items()}
            out = eval_step(state, _pipeline.shard_batch(batch, mesh))
            for k in totals:
                totals[k] += float(out[k])
        return {"test_loss": totals["loss_sum"] / totals["count"],
                "test_accuracy": totals["correct"] / totals["count"]}

    last_epoch = config.num_epochs if stop_after_epochs is None else min(
        config.num_epochs, stop_after_epochs)
    t_start = time.monotonic()
    for epoch in range(start_epoch, last_epoch):
        batches = _pipeline.epoch_batches(
            train_x, train_y, batch_size, seed=config.seed, epoch=epoch,
            normalization=normalization, augment_shift=config.augment_shift,
        )
        show = config.progress and jax.process_index() == 0
        bar = _progress(batches, steps_per_epoch, f"epoch {epoch + 1}/{config.num_epochs}", show)
        # Reading metrics forces a host sync; sampling every LOG_EVERY steps keeps the loop
        # asynchronous and is plenty for a training curve.
        sampled: list[dict[str, float]] = []
        for i, batch in enumerate(bar):
            state, metrics = train_step(state, _pipeline.shard_batch(batch, mesh))
            if i % LOG_EVERY == 0 or i == steps_per_epoch - 1:
                sampled.append({k: float(v) for k, v in metrics.items()})
                if not math.isfinite(sampled[-1]["loss"]):
                    raise FloatingPointError(
                        f"training loss became {sampled[-1]['loss']} at epoch {epoch + 1}, "
                        f"step {i}; lower --config.learning_rate."
                    )
                if show:
                    bar.set_postfix(loss=f"{sampled[-1]['loss']:.4f}")
        record = {"epoch": epoch + 1,
                  "train_loss": float(np.mean([m["loss"] for m in sampled])),
                  "train_accuracy": float(np.mean([m["accuracy"] for m in sampled])),
                  **evaluate(state),
                  "elapsed_s": time.monotonic() - t_start}
        history.append(record)
        if jax.process_index() == 0:
            print(f"epoch {epoch + 1}: train_loss={record['train_loss']:.4f} "
                  f"test_loss={record['test_loss']:.4f} "
                  f"test_accuracy={record['test_accuracy']:.4f}", flush=True)
        if (epoch + 1) % config.checkpoint_every_epochs == 0 or epoch + 1 == last_epoch:
            manager.save(epoch + 1, {"state": state},
                         metadata={"epoch": epoch + 1, "history": history,
                                   "config": config.to_dict()})
    manager.wait_until_finished()
    manager.close()
    if jax.process_index() == 0:  # every process holds the same history; one writes it
        (workdir / "metrics.json").write_text(json.dumps(
            {"config": config.to_dict(), "history": history, "model": model.name,
             "devices": mesh.size, "processes": jax.process_count()}, indent=2))
        if history:
            write_plot(history, workdir / "metrics.png")
    return {"history": history, "state": state, "final": history[-1] if history else {}}
