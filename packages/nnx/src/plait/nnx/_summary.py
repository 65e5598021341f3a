"""``tabulate``: a table of every Module call in one forward pass.

The model is traced abstractly (``jax.eval_shape`` over its split state), so nothing is
computed and the model itself is not modified. Each row is one Module call: its path,
type, input and output shapes, the Variables of its subtree counted by type (number of
elements and bytes) and, on request, the FLOPs XLA estimates for that call and for its
VJP (``jax.jit(...).lower(...).cost_analysis()``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from plait.core import Object, RngStream, Variable, iter_graph, merge, split

from . import _module


@dataclasses.dataclass(frozen=True)
class ArrayRepr:
    """Shape and dtype of an array, printed as ``float32[4,3]``."""

    shape: tuple[int, ...]
    dtype: Any

    @classmethod
    def from_array(cls, x: jax.Array | np.ndarray) -> ArrayRepr:
        return cls(tuple(x.shape), jnp.dtype(x.dtype))

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


@dataclasses.dataclass(frozen=True)
class SizeBytes:
    """Number of elements and bytes of a group of arrays."""

    size: int
    bytes: int

    def __add__(self, other: SizeBytes) -> SizeBytes:
        return SizeBytes(self.size + other.size, self.bytes + other.bytes)

    def __str__(self) -> str:
        return f"{self.size:,} ({_format_bytes(self.bytes)})"

    @classmethod
    def from_array(cls, x: Any) -> SizeBytes:
        """Elements and bytes of ``x``, or of all arrays in ``x`` when it is a pytree."""
        total = cls(0, 0)
        for leaf in jax.tree.leaves(x):
            dtype = getattr(leaf, "dtype", None)
            if dtype is None:
                continue
            size = int(np.prod(np.shape(leaf), dtype=np.int64))
            total = total + cls(size, size * _itemsize(dtype))
        return total


def _itemsize(dtype: Any) -> int:
    """Bytes per element; PRNG key dtypes (``key<fry>``) report theirs directly."""
    size = getattr(dtype, "itemsize", None)
    return int(size) if size is not None else int(np.dtype(dtype).itemsize)


@dataclasses.dataclass
class CallInfo:
    """One row of the table: a call of ``type`` at ``path``."""

    call_order: int
    object_id: int
    type: type
    path: tuple[Any, ...]
    inputs_repr: str
    outputs: Any
    flops: int | None
    vjp_flops: int | None


def filter_rng_streams(row: CallInfo) -> bool:
    """Default row filter: hides calls of RNG streams."""
    return not (isinstance(row.type, type) and issubclass(row.type, RngStream))


def _format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _describe(tree: Any) -> str:
    """Shapes of the arrays in ``tree``: ``float32[4,2]``, tuples as ``(a, b)``."""
    if isinstance(tree, Variable):
        return f"{type(tree).__name__}({_describe(tree.get_value())})"
    if _is_array(tree):
        return str(ArrayRepr.from_array(tree))
    if isinstance(tree, tuple | list):
        inner = ", ".join(_describe(t) for t in tree)
        return f"({inner}{',' if len(tree) == 1 and isinstance(tree, tuple) else ''})"
    if isinstance(tree, Mapping):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in tree.items()) + "}"
    if isinstance(tree, Object):
        return type(tree).__name__
    return repr(tree)


def _describe_inputs(args: tuple, kwargs: dict) -> str:
    parts = [_describe(a) for a in args]
    parts += [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def _abstract(tree: Any) -> Any:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if _is_array(x) else x, tree
    )


class _Recorder:
    """Collects the calls of one abstract forward pass."""

    def __init__(self, paths: dict[int, tuple], want_flops: bool):
        self.paths = paths
        self.want_flops = want_flops
        self.rows: list[dict[str, Any]] = []

    def enter(self, module: Any, args: tuple, kwargs: dict, method: str = "__call__") -> int:
        path = self.paths.get(id(module))
        if path is None:  # a module built during the call: not part of the model
            return -1
        row: dict[str, Any] = {
            "object_id": id(module),
            "type": type(module),
            "path": path,
            "inputs_repr": _describe_inputs(args, kwargs),
            "outputs": None,
            "method": method,
        }
        if self.want_flops:
            graphdef, state = split(module)
            row["graphdef"] = graphdef
            row["state"] = _abstract(state)
            row["call_args"] = _abstract((args, kwargs))
        self.rows.append(row)
        return len(self.rows) - 1

    def exit(self, token: int, out: Any) -> None:
        if token >= 0:
            self.rows[token]["outputs"] = _abstract(out)


def _cost(fn: Callable[..., Any], *args: Any) -> int | None:
    """FLOPs that XLA's cost model gives for ``fn(*args)``; None when it gives none."""
    try:
        analysis = jax.jit(fn).lower(*args).cost_analysis()
    except Exception:  # some calls (e.g. with static Python arguments) cannot lower alone
        return None
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return None if flops is None else int(flops)


def _row_flops(row: dict[str, Any], vjp: bool) -> int | None:
    graphdef, method = row["graphdef"], row["method"]
    (args, kwargs) = row["call_args"]
    leaves, treedef = jax.tree.flatten((args, kwargs))
    dynamic = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.ShapeDtypeStruct)]

    def call(state, dyn):
        full = list(leaves)
        for i, x in zip(dynamic, dyn, strict=True):
            full[i] = x
        a, k = jax.tree.unflatten(treedef, full)
        module = merge(graphdef, state)
        return getattr(module, method)(*a, **k)

    dyn_args = [leaves[i] for i in dynamic]
    if not vjp:
        return _cost(call, row["state"], dyn_args)

    def forward_backward(state, dyn):
        out, pullback = jax.vjp(call, state, dyn)
        return pullback(jax.tree.map(jnp.ones_like, out))

    return _cost(forward_backward, row["state"], dyn_args)


def _subtree_stats(obj: Any) -> dict[tuple, dict[type, SizeBytes]]:
    """For every module path: the Variables of its subtree, summed by Variable type."""
    modules: dict[tuple, Any] = {}
    variables: list[tuple[tuple, Variable]] = []
    for path, node in iter_graph(obj):
        path = tuple(path)
        if isinstance(node, _module.Module):
            modules[path] = node
        elif isinstance(node, Variable):
            variables.append((path, node))
    stats: dict[tuple, dict[type, SizeBytes]] = {p: {} for p in modules}
    for var_path, var in variables:
        size = SizeBytes.from_array(var.get_value())
        for module_path in modules:
            if var_path[: len(module_path)] == module_path:
                groups = stats[module_path]
                groups[type(var)] = groups.get(type(var), SizeBytes(0, 0)) + size
    return stats


def _render(title: str, header: list[str], rows: list[list[str]], footer: list[str]) -> str:
    widths = [
        max(len(line) for cell in column for line in cell.splitlines() or [""])
        for column in zip(header, *rows, strict=True)
    ]

    def rule(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    def line(cells: list[str]) -> str:
        return "│" + "│".join(f" {c:<{w}} " for c, w in zip(cells, widths, strict=True)) + "│"

    total_width = sum(widths) + 3 * len(widths) + 1
    out = [title.center(total_width).rstrip(), rule("┌", "┬", "┐"), line(header)]
    out.append(rule("├", "┼", "┤"))
    for i, row in enumerate(rows):
        if i == len(rows) - 1 and row and row[0] == "":
            out.append(rule("├", "┼", "┤"))
        out.append(line(row))
    out.append(rule("└", "┴", "┘"))
    out.extend(line_text.center(total_width).rstrip() for line_text in footer)
    return "\n".join(out)


def tabulate(
    obj,
    *input_args,
    depth: int | None = None,
    method: str = "__call__",
    row_filter: Callable[[CallInfo], bool] = filter_rng_streams,
    table_kwargs: Mapping[str, Any] = MappingProxyType({}),
    column_kwargs: Mapping[str, Any] = MappingProxyType({}),
    console_kwargs: Mapping[str, Any] = MappingProxyType({}),
    compute_flops: bool = False,
    compute_vjp_flops: bool = False,
    **input_kwargs,
) -> str:
    """Summary table of calling ``obj.<method>(*input_args, **input_kwargs)``.

    Rows are the Module calls in call order (the outer call first); ``depth`` keeps only
    rows at most that many attributes below ``obj``. Variable columns count the
    elements and bytes of each row's subtree by Variable type, so the last row gives the
    totals. ``compute_flops`` / ``compute_vjp_flops`` add XLA's FLOP estimate of each
    call and of its forward+backward pass. Inputs may be arrays or
    ``jax.ShapeDtypeStruct``; nothing is computed and ``obj`` is not modified.
    ``table_kwargs`` may set ``title``; the other ``*_kwargs`` are accepted for Flax
    compatibility (the table is plain text, not a rich console table).

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Affine(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.zeros((2, 3)))
      ...   def __call__(self, x):
      ...     return x @ self.w
      >>> print(nnx.tabulate(Affine(), jnp.ones((4, 2))))  # doctest: +NORMALIZE_WHITESPACE
                           Affine Summary
      ┌──────┬────────┬──────────────┬──────────────┬──────────┐
      │ path │ type   │ inputs       │ outputs      │ Param    │
      ├──────┼────────┼──────────────┼──────────────┼──────────┤
      │      │ Affine │ float32[4,2] │ float32[4,3] │ 6 (24 B) │
      ├──────┼────────┼──────────────┼──────────────┼──────────┤
      │      │        │              │ Total        │ 6 (24 B) │
      └──────┴────────┴──────────────┴──────────────┴──────────┘
                       Total Parameters: 6 (24 B)
    """
    del column_kwargs, console_kwargs  # plain-text table: no rich console options
    want_flops = compute_flops or compute_vjp_flops
    graphdef, state = split(obj)
    abstract_state = _abstract(state)
    rows_out: list[dict[str, Any]] = []

    def traced(state, args, kwargs):
        model = merge(graphdef, state)
        paths = {id(m): tuple(p) for p, m in iter_graph(model) if isinstance(m, Object)}
        recorder = _Recorder(paths, want_flops)
        root_token = recorder.enter(model, args, kwargs, method)

        class _Observer:
            def enter(self, module, a, k):
                return -1 if module is model else recorder.enter(module, a, k)

            def exit(self, token, out):
                recorder.exit(token, out)

        observer = _Observer()
        _module._call_observers.append(observer)
        try:
            out = getattr(model, method)(*args, **kwargs)
        finally:
            _module._call_observers.remove(observer)
        recorder.exit(root_token, out)
        rows_out.extend(recorder.rows)
        return out

    jax.eval_shape(traced, abstract_state, input_args, input_kwargs)

    stats = _subtree_stats(obj)
    var_types: list[type] = []
    for groups in stats.values():
        for t in groups:
            if t not in var_types:
                var_types.append(t)
    calls: list[CallInfo] = []
    for order, row in enumerate(rows_out):
        calls.append(
            CallInfo(
                call_order=order,
                object_id=row["object_id"],
                type=row["type"],
                path=row["path"],
                inputs_repr=row["inputs_repr"],
                outputs=row["outputs"],
                flops=_row_flops(row, vjp=False) if compute_flops else None,
                vjp_flops=_row_flops(row, vjp=True) if compute_vjp_flops else None,
            )
        )
    calls = [c for c in calls if row_filter(c) and (depth is None or len(c.path) <= depth)]

    header = ["path", "type", "inputs", "outputs", *(t.__name__ for t in var_types)]
    if compute_flops:
        header.append("flops")
    if compute_vjp_flops:
        header.append("vjp_flops")
    table: list[list[str]] = []
    for call in calls:
        groups = stats.get(call.path, {})
        cells = [
            "/".join(str(k) for k in call.path),
            call.type.__name__,
            call.inputs_repr,
            _describe(call.outputs),
            *(str(groups[t]) if t in groups else "" for t in var_types),
        ]
        if compute_flops:
            cells.append("" if call.flops is None else f"{call.flops:,}")
        if compute_vjp_flops:
            cells.append("" if call.vjp_flops is None else f"{call.vjp_flops:,}")
        table.append(cells)
    root_groups = stats.get((), {})
    total_row = ["", "", "", "Total", *(str(root_groups.get(t, SizeBytes(0, 0))) for t in var_types)]
    total_row += [""] * (len(header) - len(total_row))
    table.append(total_row)
    grand = sum(root_groups.values(), SizeBytes(0, 0))
    title = table_kwargs.get("title", f"{type(obj).__name__} Summary")
    return _render(title, header, table, [f"Total Parameters: {grand}"])
