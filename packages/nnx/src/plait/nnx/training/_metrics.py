"""Stateful metrics: running averages, accuracy and Welford statistics.

A metric is an ``Object`` whose running totals live in :class:`MetricState` Variables,
so a metric can be passed through ``nnx.jit`` and updated inside it like a model.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from plait.core import Object, Variable, split, struct

from .._errors import MetricUpdateError


class MetricState(Variable):
    """Variable type of a metric's running state (totals, counts, means)."""


class Metric(Object):
    """Base class of metrics: ``update`` accumulates, ``compute`` reads, ``reset`` clears.

    Example:
      >>> from plait import nnx
      >>> import jax.numpy as jnp
      >>> avg = nnx.metrics.Average()
      >>> avg.update(values=jnp.array([1.0, 2.0, 3.0]))
      >>> float(avg.compute())
      2.0
    """

    def __init__(self) -> None:
        pass

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement reset()")

    def update(self, **kwargs) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update(**kwargs)")

    def compute(self):
        raise NotImplementedError(f"{type(self).__name__} must implement compute()")

    def split(self, *filters):
        """``nnx.split(self, *filters)``: the metric's GraphDef and State(s)."""
        return split(self, *filters)


def _required(metric: Metric, kwargs: dict[str, Any], argname: str) -> jax.Array:
    if argname not in kwargs:
        raise MetricUpdateError(
            f"{type(metric).__name__}.update() needs the keyword argument '{argname}', got "
            f"{sorted(kwargs) or 'none'}.\nFix: call update({argname}=...), or construct "
            f"{type(metric).__name__}(argname=...) with the name your values are passed under."
        )
    return jnp.asarray(kwargs[argname])


def _mask_like(metric: Metric, mask: Any, values: jax.Array) -> jax.Array:
    mask = jnp.asarray(mask)
    try:
        return jnp.broadcast_to(mask, values.shape)
    except ValueError:
        raise MetricUpdateError(
            f"{type(metric).__name__}.update(): mask of shape {mask.shape} does not broadcast "
            f"to values of shape {values.shape}.\nFix: give mask the shape of the values (or "
            "of their leading axes, with trailing axes of size 1)."
        ) from None


class Average(Metric):
    """Running mean of every value passed under the keyword ``argname``.

    Example:
      >>> from plait import nnx
      >>> import jax.numpy as jnp
      >>> avg = nnx.metrics.Average("loss")
      >>> avg.update(loss=jnp.array([1.0, 3.0]))
      >>> avg.update(loss=5.0)
      >>> float(avg.compute())
      3.0
    """

    def __init__(self, argname: str = "values") -> None:
        self.argname = argname
        self.total = MetricState(jnp.array(0, dtype=jnp.float32))
        self.count = MetricState(jnp.array(0, dtype=jnp.int32))

    def reset(self) -> None:
        self.total.set_value(jnp.zeros_like(self.total.get_value()))
        self.count.set_value(jnp.zeros_like(self.count.get_value()))

    def update(self, mask: jax.Array | None = None, **kwargs) -> None:
        values = _required(self, kwargs, self.argname)
        if mask is None:
            total = values.sum(dtype=jnp.float32)
            count = jnp.asarray(values.size, dtype=jnp.int32)
        else:
            weights = _mask_like(self, mask, values)
            total = jnp.where(weights, values, 0).sum(dtype=jnp.float32)
            count = weights.astype(jnp.int32).sum(dtype=jnp.int32)
        self.total.set_value(self.total.get_value() + total)
        self.count.set_value(self.count.get_value() + count)

    def compute(self) -> jax.Array:
        return self.total.get_value() / self.count.get_value()


class Accuracy(Average):
    """Fraction of correct predictions.

    With ``threshold=None`` the prediction is ``argmax(logits, -1)`` and ``labels`` are
    integer class ids (``logits.ndim == labels.ndim + 1``). With a threshold the task is
    binary: the prediction is ``logits > threshold`` and ``labels`` have the logits' shape.

    Example:
      >>> from plait import nnx
      >>> import jax.numpy as jnp
      >>> acc = nnx.metrics.Accuracy()
      >>> acc.update(logits=jnp.array([[0.1, 0.9], [0.8, 0.2]]), labels=jnp.array([1, 1]))
      >>> float(acc.compute())
      0.5
    """

    def __init__(self, threshold: float | None = None, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.threshold = threshold

    def update(  # type: ignore[override]
        self,
        *,
        logits: jax.Array,
        labels: jax.Array,
        mask: jax.Array | None = None,
        **_,
    ) -> None:
        logits, labels = jnp.asarray(logits), jnp.asarray(labels)
        if self.threshold is None:
            if logits.ndim != labels.ndim + 1:
                raise MetricUpdateError(
                    f"Accuracy.update(): logits of shape {logits.shape} need one more axis "
                    f"(the classes) than labels, got labels of shape {labels.shape}.\nFix: "
                    "pass integer class labels, or Accuracy(threshold=...) for binary "
                    "predictions with labels shaped like the logits."
                )
            if not jnp.issubdtype(labels.dtype, jnp.integer):
                raise MetricUpdateError(
                    f"Accuracy.update(): labels must be integer class ids, got dtype "
                    f"{labels.dtype}.\nFix: labels.astype(jnp.int32), or use a threshold "
                    "for binary labels."
                )
            correct = jnp.argmax(logits, axis=-1) == labels
        else:
            if logits.shape != labels.shape:
                raise MetricUpdateError(
                    f"Accuracy(threshold={self.threshold}).update(): logits {logits.shape} "
                    f"and labels {labels.shape} must have the same shape.\nFix: reshape "
                    "them to match (binary predictions, one logit per label)."
                )
            correct = (logits > self.threshold) == labels.astype(bool)
        super().update(values=correct, mask=mask)


@struct.dataclass
class Statistics:
    """Result of :class:`Welford`: mean, standard error of the mean, standard deviation."""

    mean: jax.Array
    standard_error_of_mean: jax.Array
    standard_deviation: jax.Array


class Welford(Metric):
    """Numerically stable running mean and variance (Welford / Chan merging).

    Example:
      >>> from plait import nnx
      >>> import jax.numpy as jnp
      >>> w = nnx.metrics.Welford()
      >>> w.update(values=jnp.array([1.0, 2.0]))
      >>> w.update(values=jnp.array([3.0, 4.0]))
      >>> stats = w.compute()
      >>> float(stats.mean), round(float(stats.standard_deviation), 4)
      (2.5, 1.118)
    """

    def __init__(self, argname: str = "values") -> None:
        self.argname = argname
        self.count = MetricState(jnp.array(0, dtype=jnp.int32))
        self.mean = MetricState(jnp.array(0, dtype=jnp.float32))
        self.m2 = MetricState(jnp.array(0, dtype=jnp.float32))

    def reset(self) -> None:
        for v in (self.count, self.mean, self.m2):
            v.set_value(jnp.zeros_like(v.get_value()))

    def update(self, **kwargs) -> None:
        values = _required(self, kwargs, self.argname).astype(jnp.float32).ravel()
        n_b = jnp.asarray(values.size, dtype=jnp.float32)
        mean_b = values.mean() if values.size else jnp.float32(0)
        m2_b = jnp.square(values - mean_b).sum()
        n_a = self.count.get_value().astype(jnp.float32)
        mean_a = self.mean.get_value()
        n = n_a + n_b
        delta = mean_b - mean_a
        safe_n = jnp.where(n > 0, n, 1)
        self.mean.set_value(mean_a + delta * n_b / safe_n)
        self.m2.set_value(self.m2.get_value() + m2_b + delta * delta * n_a * n_b / safe_n)
        self.count.set_value(self.count.get_value() + values.size)

    def compute(self) -> Statistics:
        count = self.count.get_value().astype(jnp.float32)
        variance = self.m2.get_value() / count
        std = jnp.sqrt(variance)
        return Statistics(
            mean=self.mean.get_value(),
            standard_error_of_mean=std / jnp.sqrt(count),
            standard_deviation=std,
        )


class MultiMetric(Metric):
    """Several named metrics updated together.

    ``update(**updates)`` passes every keyword to every metric (each takes what it
    needs), ``compute()`` returns ``{name: value}``.

    Example:
      >>> from plait import nnx
      >>> import jax.numpy as jnp
      >>> metrics = nnx.MultiMetric(
      ...     accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
      >>> metrics.update(logits=jnp.array([[0.0, 1.0]]), labels=jnp.array([1]), loss=0.5)
      >>> {k: float(v) for k, v in metrics.compute().items()}
      {'accuracy': 1.0, 'loss': 0.5}
    """

    def __init__(self, **metrics: Metric) -> None:
        for name, metric in metrics.items():
            if not isinstance(metric, Metric):
                raise TypeError(
                    f"MultiMetric({name}=...) got {type(metric).__name__}, expected a "
                    "Metric such as nnx.metrics.Average()."
                )
            setattr(self, name, metric)
        self._metric_names = tuple(metrics)

    def _metrics(self) -> list[tuple[str, Metric]]:
        return [(name, getattr(self, name)) for name in self._metric_names]

    def reset(self) -> None:
        for _, metric in self._metrics():
            metric.reset()

    def update(self, **updates) -> None:
        for _, metric in self._metrics():
            metric.update(**updates)

    def compute(self) -> dict[str, Any]:
        return {name: metric.compute() for name, metric in self._metrics()}
