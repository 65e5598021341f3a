"""The jitted pieces of training: sharded init, loss, train step, eval step.

The train state is a dict ``{'model': State, 'optimizer': State}`` of plain nnx States,
so one ``jax.jit`` with explicit ``in_shardings`` / ``out_shardings`` owns placement
(parameters and optimizer moments stay exactly where the logical rules put them), and
the same dict is what checkpoints hold. Inside the step the model and optimizer are
rebuilt with ``nnx.merge``; gradients come from ``nnx.value_and_grad``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from plait import nnx

from ._config import TrainConfig
from ._model import Gemma
from ._sharding import LOGICAL_AXIS_RULES, batch_sharding, named_shardings, optimizer_shardings


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warmup to ``learning_rate``, cosine decay to ``learning_rate * min_learning_ratio``."""
    warmup = max(min(config.warmup_steps, config.num_steps - 1), 0)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(config.num_steps, warmup + 1),
        end_value=config.learning_rate * config.min_learning_ratio,
    )


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with the schedule, decay on matrices only, after global-norm clipping."""
    adamw = optax.adamw(
        learning_rate_schedule(config),
        b1=config.beta1,
        b2=config.beta2,
        weight_decay=config.weight_decay,
        mask=lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params),
    )
    if config.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adamw)
    return adamw


def cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sum of weighted negative log-likelihoods, sum of weights)`` in float32.

    Example:
      >>> import jax.numpy as jnp
      >>> total, count = cross_entropy(jnp.zeros((1, 2, 4)), jnp.array([[1, 2]]), jnp.array([[1.0, 0.0]]))
      >>> round(float(total / count), 4) == round(float(jnp.log(4.0)), 4)
      True
    """
    logits = logits.astype(jnp.float32)
    log_normalizer = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    weights = weights.astype(jnp.float32)
    return jnp.sum((log_normalizer - picked) * weights), jnp.sum(weights)


@dataclasses.dataclass(frozen=True)
class TrainFunctions:
    """What ``build_train_functions`` returns: graph definitions, shardings and jitted functions."""

    model_graphdef: Any
    optimizer_graphdef: Any
    shardings: dict[str, Any]
    abstract_state: dict[str, Any]
    mesh: Mesh
    init: Callable[[], dict[str, Any]]
    train_step: Callable[[dict[str, Any], dict[str, jax.Array]], tuple[dict[str, Any], dict[str, jax.Array]]]
    eval_step: Callable[[dict[str, Any], dict[str, jax.Array]], dict[str, jax.Array]]
    batch_sharding: NamedSharding

    def model(self, state: dict[str, Any]) -> Gemma:
        """The live model of a train state (shares its arrays)."""
        return nnx.merge(self.model_graphdef, state["model"])


def _new_model_and_optimizer(config: TrainConfig, tx):
    model = Gemma(config.model, rngs=nnx.Rngs(params=config.seed))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return model, optimizer


@functools.lru_cache(maxsize=8)
def build_train_functions(config: TrainConfig, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> TrainFunctions:
    """Works out shapes (``nnx.eval_shape``) and shardings, and jits the steps.

    Cached per ``(config, mesh, rules)``, so a second run in the same process (a resume,
    a test) reuses the compiled steps.
    """
    tx = make_optimizer(config)
    abstract_model, abstract_optimizer = nnx.eval_shape(lambda: _new_model_and_optimizer(config, tx))
    model_graphdef, model_state = nnx.split(abstract_model)
    optimizer_graphdef, optimizer_state = nnx.split(abstract_optimizer)
    model_shardings = named_shardings(model_state, mesh, rules)
    shardings = {
        "model": model_shardings,
        "optimizer": optimizer_shardings(optimizer_state, model_shardings, mesh),
    }
    abstract_state = {"model": model_state, "optimizer": optimizer_state}
    batch_placement = batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())

    @functools.partial(jax.jit, out_shardings=shardings)
    def init():
        model, optimizer = _new_model_and_optimizer(config, tx)
        return {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}

    def loss_fn(model: Gemma, batch):
        logits = model(batch["inputs"], batch["positions"])
        total, count = cross_entropy(logits, batch["targets"], batch["weights"])
        return total / jnp.maximum(count, 1.0), (total, count)

    # Donation avoids a second copy of the state on accelerators; CPU cannot donate.
    donate = (0,) if jax.default_backend() != "cpu" else ()

    @functools.partial(
        jax.jit,
        in_shardings=(shardings, batch_placement),
        out_shardings=(shardings, replicated),
        donate_argnums=donate,
    )
    def train_step(state, batch):
        model = nnx.merge(model_graphdef, state["model"])
        optimizer = nnx.merge(optimizer_graphdef, state["optimizer"])
        (loss, (_, count)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
        grad_norm = optax.tree.norm(grads)
        optimizer.update(model, grads)
        metrics = {"loss": loss, "tokens": count, "grad_norm": grad_norm}
        return {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}, metrics

    @functools.partial(jax.jit, in_shardings=(shardings["model"], batch_placement), out_shardings=replicated)
    def _eval(model_state, batch):
        model = nnx.merge(model_graphdef, model_state)
        logits = model(batch["inputs"], batch["positions"])
        total, count = cross_entropy(logits, batch["targets"], batch["weights"])
        return {"nll_sum": total, "tokens": count}

    return TrainFunctions(
        model_graphdef=model_graphdef,
        optimizer_graphdef=optimizer_graphdef,
        shardings=shardings,
        abstract_state=abstract_state,
        mesh=mesh,
        init=init,
        train_step=train_step,
        eval_step=lambda state, batch: _eval(state["model"], batch),
        batch_sharding=batch_placement,
    )


def place_batch(batch: dict[str, Any], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Global host batch -> sharded arrays; each process contributes only its rows."""
    process, processes = jax.process_index(), jax.process_count()
    out = {}
    for name, value in batch.items():
        rows = value.shape[0] // processes
        local = value[process * rows : (process + 1) * rows]
        out[name] = jax.make_array_from_process_local_data(sharding, local, value.shape)
    return out
