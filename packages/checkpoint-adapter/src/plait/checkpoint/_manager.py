"""CheckpointManager: numbered checkpoints, retention, asynchronous saves."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from . import _layout, _orbax
from ._errors import CheckpointError, IncompleteCheckpointError
from ._restore import CheckpointInfo, read_metadata, restore
from ._rules import KeyRule
from ._save import PendingSave, start_save

__all__ = ["CheckpointManager"]


class CheckpointManager:
    """Step-numbered checkpoints in one directory, with retention and async saves.

    Each step is a checkpoint directory ``<directory>/<step>`` as written by
    :func:`save`. A step is listed (``all_steps``, ``latest_step``) only once it is
    complete, so a save that is still running, or that was killed, is invisible
    and never deleted into a gap: retention only ever removes complete older
    steps, after a newer save has committed.

    With ``async_save=True`` (the default), :meth:`save` returns as soon as the
    arrays are copied off the devices; the files, manifest and commit marker are
    written by a background thread while training goes on. The next ``save``,
    ``restore``, ``wait_until_finished`` or ``close`` waits for it and re-raises
    any error it hit.

    Retention: the newest ``max_to_keep`` steps are kept; with ``keep_best=K`` and
    ``best_metric``, the K best steps by ``metrics[best_metric]`` (``best_mode``
    ``"max"`` or ``"min"``) are kept as well. The newest step is always kept. With
    neither option every step is kept.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> from plait.checkpoint import CheckpointManager
      >>> with CheckpointManager(tempfile.mkdtemp(), max_to_keep=2) as mngr:
      ...     for step in range(4):
      ...         mngr.save(step, {"w": jnp.full(2, step)}, metrics={"loss": 1.0 / (step + 1)})
      ...     mngr.wait_until_finished()
      ...     print(mngr.all_steps(), mngr.restore()["w"])
      [2, 3] [3 3]
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int | None = None,
        keep_best: int | None = None,
        best_metric: str | None = None,
        best_mode: str = "max",
        async_save: bool = True,
    ):
        for name, value in (("max_to_keep", max_to_keep), ("keep_best", keep_best)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}.")
        if keep_best is not None and best_metric is None:
            raise ValueError("keep_best needs best_metric= (the metrics key to rank steps by).")
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_to_keep = max_to_keep
        self.keep_best = keep_best
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.async_save = async_save
        if _orbax.is_primary():
            os.makedirs(self.directory, exist_ok=True)
        _orbax.barrier("manager_init")
        self._checkpointer = _orbax.make_checkpointer(asynchronous=async_save)
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._metrics_cache: dict[int, Mapping[str, Any]] = {}
        self._closed = False

    # -- paths and listing ------------------------------------------------------------------

    def step_directory(self, step: int) -> str:
        """The checkpoint directory of ``step``."""
        return os.path.join(self.directory, str(int(step)))

    def all_steps(self) -> list[int]:
        """The steps with a complete checkpoint, ascending (running saves excluded)."""
        steps = []
        for name in os.listdir(self.directory):
            if (
                name.isdigit()
                and str(int(name)) == name
                and _layout.is_complete(os.path.join(self.directory, name))
            ):
                steps.append(int(name))
        return sorted(steps)

    def latest_step(self) -> int | None:
        """The newest complete step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The complete step with the best ``metrics[best_metric]``, or None."""
        ranked = self._ranked_by_metric(self.all_steps())
        return ranked[0] if ranked else None

    # -- saving -----------------------------------------------------------------------------

    def save(
        self,
        step: int,
        tree: Any,
        *,
        metrics: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> None:
        """Saves ``tree`` as checkpoint ``step`` (see :func:`save` for what a tree may hold).

        Args:
          step: a non-negative int.
          tree: the pytree to save.
          metrics: JSON numbers by name (ranked by ``best_metric``).
          metadata: a JSON-serializable dict stored with the checkpoint.
          force: replace an existing complete checkpoint of the same step.
        """
        self._check_open()
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}.")
        if self.best_metric is not None and metrics and self.best_metric in metrics:
            value = metrics[self.best_metric]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(
                    f"metrics[{self.best_metric!r}] must be a Python number (it ranks steps), got "
                    f"{type(value).__name__}. Fix: pass float(value)."
                )
        self._finish_pending()
        pending = start_save(
            self.step_directory(step),
            tree,
            checkpointer=self._checkpointer,
            metadata=metadata,
            step=step,
            metrics=metrics,
            force=force,
        )
        self._metrics_cache.pop(step, None)
        if self.async_save:
            self._worker = threading.Thread(
                target=self._commit_in_background,
                args=(pending,),
                name=f"plait-checkpoint-{step}",
                daemon=True,
            )
            self._worker.start()
        else:
            self._commit(pending)
            _orbax.barrier("manager_save")

    def _commit(self, pending: PendingSave) -> None:
        pending.commit()
        if _orbax.is_primary():
            self._apply_retention()

    def _commit_in_background(self, pending: PendingSave) -> None:
        try:
            self._commit(pending)
        except BaseException as err:  # re-raised on the caller's thread
            self._error = err

    def _finish_pending(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join()
            # Every process had the same save running; once all are here the primary
            # has written the marker, so every process lists the new step.
            _orbax.barrier("manager_commit")
        if self._error is not None:
            error, self._error = self._error, None
            raise CheckpointError(
                f"A background checkpoint save in {self.directory} failed: {error!r}"
            ) from error

    def wait_until_finished(self) -> None:
        """Blocks until the running save (if any) is committed; re-raises its error."""
        self._finish_pending()

    # -- retention --------------------------------------------------------------------------

    def _metrics(self, step: int) -> Mapping[str, Any]:
        if step not in self._metrics_cache:
            try:
                self._metrics_cache[step] = read_metadata(self.step_directory(step)).metrics
            except CheckpointError:
                self._metrics_cache[step] = {}
        return self._metrics_cache[step]

    def _ranked_by_metric(self, steps: Sequence[int]) -> list[int]:
        if self.best_metric is None:
            return []
        scored = []
        for step in steps:
            value = self._metrics(step).get(self.best_metric)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and not math.isnan(value)
            ):
                scored.append((value if self.best_mode == "max" else -value, step))
        # Best first; on ties the newer step wins.
        return [step for _, step in sorted(scored, reverse=True)]

    def steps_to_keep(self, steps: Sequence[int]) -> set[int]:
        """Which of ``steps`` the retention policy keeps."""
        steps = sorted(steps)
        if self.max_to_keep is None and self.keep_best is None:
            return set(steps)
        keep = set(steps[-(self.max_to_keep or 1) :])
        if self.keep_best is not None:
            keep.update(self._ranked_by_metric(steps)[: self.keep_best])
        return keep

    def _apply_retention(self) -> None:
        steps = self.all_steps()
        keep = self.steps_to_keep(steps)
        for step in steps:
            if step not in keep:
                _layout.delete_checkpoint(self.step_directory(step))
                self._metrics_cache.pop(step, None)

    def delete(self, step: int) -> None:
        """Deletes checkpoint ``step`` (marker first, so it is never half-visible)."""
        self._finish_pending()
        if _orbax.is_primary():
            _layout.delete_checkpoint(self.step_directory(step))
        self._metrics_cache.pop(step, None)
        _orbax.barrier("manager_delete")

    # -- restoring --------------------------------------------------------------------------

    def _resolve(self, step: int | None) -> int:
        self._finish_pending()
        if step is None:
            step = self.latest_step()
            if step is None:
                raise IncompleteCheckpointError(
                    self.directory, "the manager directory has no complete checkpoint yet"
                )
        return step

    def restore(
        self,
        step: int | None = None,
        target: Any = None,
        *,
        partial: bool = False,
        shardings: Any = None,
        rules: Sequence[KeyRule] = (),
        verify: bool = True,
    ) -> Any:
        """Restores ``step`` (default: the latest); see :func:`restore` for the arguments."""
        self._check_open()
        step = self._resolve(step)
        return restore(
            self.step_directory(step),
            target,
            partial=partial,
            shardings=shardings,
            rules=rules,
            verify=verify,
        )

    def metadata(self, step: int | None = None) -> CheckpointInfo:
        """Step, metrics and user metadata of ``step`` (default: the latest)."""
        return read_metadata(self.step_directory(self._resolve(step)))

    # -- lifetime ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointError(f"The CheckpointManager for {self.directory} is closed.")

    def close(self) -> None:
        """Waits for the running save and releases the Orbax checkpointer."""
        if self._closed:
            return
        try:
            self._finish_pending()
        finally:
            self._closed = True
            self._checkpointer.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({self.directory!r}, max_to_keep={self.max_to_keep}, "
            f"keep_best={self.keep_best}, best_metric={self.best_metric!r}, async_save={self.async_save})"
        )
