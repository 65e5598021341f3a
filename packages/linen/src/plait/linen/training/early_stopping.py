"""Early stopping on a metric that should decrease (e.g. validation loss)."""

from __future__ import annotations

import math

from plait.core import struct


class EarlyStopping(struct.PyTreeNode):
    """Tracks the best metric and signals when it stopped improving.

    A metric improves when it is lower than ``best_metric - min_delta``. After an update
    that does not improve, ``should_stop`` becomes True once ``patience`` such updates had
    already happened in a row.

    Examples:
        >>> from plait.linen.training.early_stopping import EarlyStopping
        >>> es = EarlyStopping(min_delta=0.0, patience=1)
        >>> for loss in [1.0, 0.5, 0.6, 0.7, 0.8]:
        ...   es = es.update(loss)
        ...   if es.should_stop:
        ...     break
        >>> es.best_metric, loss
        (0.5, 0.7)
    """

    min_delta: float = 0
    patience: int = 0
    best_metric: float = float("inf")
    patience_count: int = 0
    should_stop: bool = False
    has_improved: bool = False

    def reset(self) -> EarlyStopping:
        """The state before any update (same ``min_delta`` and ``patience``)."""
        return self.replace(
            best_metric=float("inf"), patience_count=0, should_stop=False, has_improved=False
        )

    def update(self, metric: float) -> EarlyStopping:
        """The state after observing ``metric``."""
        if math.isinf(self.best_metric) or self.best_metric - metric > self.min_delta:
            return self.replace(best_metric=metric, patience_count=0, has_improved=True)
        should_stop = self.should_stop or self.patience_count >= self.patience
        return self.replace(
            patience_count=self.patience_count + 1, should_stop=should_stop, has_improved=False
        )
