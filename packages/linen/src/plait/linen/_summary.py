"""Model summaries: ``tabulate`` (a text table of module calls) and ``module_paths``.

The model is initialized under ``jax.eval_shape`` (nothing is computed) with a method
interceptor that records every module method call: its path, class, inputs and outputs.
Each row then shows the variables the module owns directly; the last row and the footer
sum all variables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _meta as meta
from ._context import intercept_methods
from ._filters import DENY_INTERMEDIATES, CollectionFilter
from ._module import Module


@dataclasses.dataclass
class Row:
    """One module method call of a summary table."""

    path: tuple[str, ...]
    module_copy: Module
    method: str
    inputs: Any
    outputs: Any
    module_variables: dict[str, dict[str, Any]]
    counted_variables: dict[str, dict[str, Any]]
    flops: int | None = None
    vjp_flops: int | None = None

    def size_and_bytes(self, collections: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``{collection: (number of elements, bytes)}`` of the counted variables."""
        return {col: _size_and_bytes(self.counted_variables.get(col, {})) for col in collections}


class Table(list):
    """The rows of a summary, with the module and the variable collections shown."""

    def __init__(self, module: Module, collections: Sequence[str], rows: Iterable[Row]):
        super().__init__(rows)
        self.module = module
        self.collections = list(collections)


def _size_and_bytes(tree: Any) -> tuple[int, int]:
    leaves = jax.tree_util.tree_leaves(meta.unbox(tree))
    size = sum(int(np.prod(np.shape(x))) for x in leaves)
    nbytes = sum(
        int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize
        for x in leaves
        if hasattr(x, "dtype")
    )
    return size, nbytes


def _bytes_repr(num_bytes: int) -> str:
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"  # pragma: no cover


def _array_repr(x: Any) -> str:
    shape = ",".join(str(d) for d in np.shape(x))
    return f"{jnp.dtype(x.dtype).name}[{shape}]"


def _value_repr(x: Any) -> str:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return _array_repr(x)
    if isinstance(x, meta.Partitioned):
        return f"{_value_repr(x.value)} P{tuple(x.names)}"
    if isinstance(x, Mapping):
        return "\n".join(f"{k}: {_value_repr(v)}" for k, v in x.items())
    if isinstance(x, (tuple, list)):
        inner = ", ".join(_value_repr(v) for v in x)
        return f"({inner})" if isinstance(x, tuple) else f"[{inner}]"
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _flatten_leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        out = []
        for key in sorted(tree, key=str):
            out.extend(_flatten_leaves(tree[key], f"{prefix}{key}/"))
        return out
    return [(prefix.rstrip("/"), tree)]


def _subtree(variables: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for col, tree in variables.items():
        node: Any = tree
        for name in path:
            if not isinstance(node, Mapping) or name not in node:
                node = None
                break
            node = node[name]
        if isinstance(node, Mapping) and node:
            out[col] = node
    return out


@dataclasses.dataclass
class _Call:
    path: tuple[str, ...]
    module: Module
    method: str
    inputs: Any
    outputs: Any


def _record_calls(
    module: Module,
    rngs: Any,
    args: tuple,
    kwargs: dict,
    mutable: CollectionFilter,
    method: Any,
) -> tuple[list[_Call], dict[str, Any]]:
    calls: list[_Call] = []

    def interceptor(next_fun: Callable[..., Any], a: tuple, k: dict, context: Any) -> Any:
        mod = context.module
        if mod.scope is None:
            return next_fun(*a, **k)
        index = len(calls)
        calls.append(_Call(mod.scope.path, mod, context.method_name, None, None))
        out = next_fun(*a, **k)
        inputs = a[0] if len(a) == 1 and not k else (a, k) if k else a
        calls[index] = dataclasses.replace(
            calls[index],
            inputs=_abstract(inputs),
            outputs=_abstract(out),
            module=mod.clone(parent=None),
        )
        return out

    def init_fn(rngs: Any, *args: Any) -> dict[str, Any]:
        with intercept_methods(interceptor):
            return module.init(rngs, *args, method=method, mutable=mutable, **kwargs)

    variables = jax.eval_shape(init_fn, rngs, *args)
    return calls, variables


def _abstract(tree: Any) -> Any:
    def to_struct(x: Any) -> Any:
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            return jax.ShapeDtypeStruct(np.shape(x), x.dtype)
        return x

    return jax.tree_util.tree_map(to_struct, tree, is_leaf=lambda x: isinstance(x, Module))


def _own_variables(
    variables: Mapping[str, Any], path: tuple[str, ...], child_names: set[str]
) -> dict[str, Any]:
    return {
        col: {k: v for k, v in tree.items() if k not in child_names}
        for col, tree in _subtree(variables, path).items()
    }


def _flops(module: Module, method: str, variables: Any, inputs: Any, vjp: bool) -> int | None:
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    kwargs: dict[str, Any] = {}
    if len(args) == 2 and isinstance(args[0], tuple) and isinstance(args[1], dict):
        args, kwargs = args

    def call(variables: Any, *args: Any) -> Any:
        return module.apply(
            variables,
            *args,
            method=method,
            mutable=True,
            rngs={"params": jax.random.key(0), "dropout": jax.random.key(1)},
            **kwargs,
        )[0]

    def call_vjp(variables: Any, *args: Any) -> Any:
        y, pullback = jax.vjp(call, variables, *args)
        return pullback(jax.tree_util.tree_map(jnp.ones_like, y))

    try:
        lowered = jax.jit(call_vjp if vjp else call).lower(variables, *args)
        cost = lowered.compile().cost_analysis()
    except Exception:  # noqa: BLE001 - a call that cannot be isolated reports no flops
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return int(cost.get("flops", 0)) if cost else None


def _build_table(
    module: Module,
    rngs: Any,
    args: tuple,
    kwargs: dict,
    depth: int | None,
    show_repeated: bool,
    mutable: CollectionFilter,
    compute_flops: bool,
    compute_vjp_flops: bool,
) -> Table:
    method = kwargs.pop("method", None)
    calls, variables = _record_calls(module, rngs, args, kwargs, mutable, method)
    children: dict[tuple[str, ...], set[str]] = {}
    for call in calls:
        if call.path:
            children.setdefault(call.path[:-1], set()).add(call.path[-1])
    seen: set[tuple[tuple[str, ...], str]] = set()
    rows = []
    for call in calls:
        key = (call.path, call.method)
        if not show_repeated and key in seen:
            continue
        seen.add(key)
        if depth is not None and len(call.path) > depth:
            continue
        at_limit = depth is not None and len(call.path) == depth
        subtree = _subtree(variables, call.path)
        own = (
            subtree
            if at_limit
            else _own_variables(variables, call.path, children.get(call.path, set()))
        )
        flops = vjp_flops = None
        if compute_flops:
            flops = _flops(call.module, call.method, subtree, call.inputs, vjp=False)
        if compute_vjp_flops:
            vjp_flops = _flops(call.module, call.method, subtree, call.inputs, vjp=True)
        rows.append(
            Row(
                call.path,
                call.module,
                call.method,
                call.inputs,
                call.outputs,
                own,
                own,
                flops,
                vjp_flops,
            )
        )
    collections = sorted({col for row in rows for col in row.module_variables})
    table = Table(module, collections, rows)
    table.total_variables = variables  # type: ignore[attr-defined]
    return table


def _render(table: Table, title: str | None, compute_flops: bool, vjp: bool) -> str:
    headers = ["path", "module", "inputs", "outputs"]
    if compute_flops:
        headers.append("flops")
    if vjp:
        headers.append("vjp_flops")
    headers += table.collections
    body: list[list[str]] = []
    for row in table:
        name = type(row.module_copy).__name__
        if row.method != "__call__":
            name = f"{name}.{row.method}"
        cells = ["/".join(row.path), name, _value_repr(row.inputs), _value_repr(row.outputs)]
        if compute_flops:
            cells.append("" if row.flops is None else str(row.flops))
        if vjp:
            cells.append("" if row.vjp_flops is None else str(row.vjp_flops))
        for col in table.collections:
            tree = row.module_variables.get(col, {})
            if not tree:
                cells.append("")
                continue
            lines = [f"{k}: {_value_repr(v)}" for k, v in _flatten_leaves(tree)]
            size, nbytes = _size_and_bytes(tree)
            lines += ["", f"{size:,} ({_bytes_repr(nbytes)})"]
            cells.append("\n".join(lines))
        body.append(cells)
    totals = {
        col: _size_and_bytes(table.total_variables.get(col, {}))  # type: ignore[attr-defined]
        for col in table.collections
    }
    total_row = [""] * (len(headers) - len(table.collections))
    total_row[-1] = "Total"
    total_row += [f"{s:,} ({_bytes_repr(b)})" for s, b in (totals[c] for c in table.collections)]
    body.append(total_row)
    text = _box_table(headers, body)
    width = len(text.splitlines()[0])
    lines = [(title or f"{type(table.module).__name__} Summary").center(width), text, ""]
    if table.collections:
        all_size = sum(s for s, _ in totals.values())
        all_bytes = sum(b for _, b in totals.values())
        lines.append(f"Total Parameters: {all_size:,} ({_bytes_repr(all_bytes)})".center(width))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _box_table(headers: list[str], rows: list[list[str]]) -> str:
    cols = len(headers)
    split = [[cell.split("\n") for cell in row] for row in [headers, *rows]]
    widths = [max(len(line) for row in split for line in row[i]) for i in range(cols)]

    def border(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def render_row(cells: list[list[str]], bar: str) -> list[str]:
        height = max(len(c) for c in cells)
        out = []
        for i in range(height):
            parts = [
                (c[i] if i < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)
            ]
            out.append(bar + bar.join(f" {p} " for p in parts) + bar)
        return out

    lines = [border("┏", "━", "┳", "┓"), *render_row(split[0], "┃"), border("┡", "━", "╇", "┩")]
    for i, row in enumerate(split[1:]):
        if i:
            lines.append(border("├", "─", "┼", "┤"))
        lines.extend(render_row(row, "│"))
    lines.append(border("└", "─", "┴", "┘"))
    return "\n".join(lines)


def tabulate(
    module: Module,
    rngs: Any,
    depth: int | None = None,
    show_repeated: bool = False,
    mutable: CollectionFilter = DENY_INTERMEDIATES,
    console_kwargs: Mapping[str, Any] | None = None,
    table_kwargs: Mapping[str, Any] = {},  # noqa: B006 - Flax's signature
    column_kwargs: Mapping[str, Any] = {},  # noqa: B006 - Flax's signature
    compute_flops: bool = False,
    compute_vjp_flops: bool = False,
    **kwargs: Any,
) -> Callable[..., str]:
    """Returns ``f(*args, **kwargs) -> str``: a table of every module call made by
    ``module.init(rngs, *args)`` with paths, classes, input/output shapes and variables.

    Nothing is computed (shapes only) unless ``compute_flops`` / ``compute_vjp_flops``.
    ``depth`` limits the nesting shown (deeper variables are summed into their ancestor's
    row); ``show_repeated`` shows every call of a shared module. ``table_kwargs['title']``
    replaces the title; the other rich-console options are accepted for compatibility.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scale(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('s', jax.nn.initializers.ones, (x.shape[-1],))[None]
        >>> text = nn.tabulate(Scale(), jax.random.key(0))(jnp.ones((2, 3)))
        >>> 'float32[2,3]' in text and 'Total Parameters: 3 (12 B)' in text
        True
    """
    title = dict(table_kwargs).get("title")

    def tabulate_fn(*fn_args: Any, **fn_kwargs: Any) -> str:
        table = _build_table(
            module,
            rngs,
            fn_args,
            {**kwargs, **fn_kwargs},
            depth,
            show_repeated,
            mutable,
            compute_flops,
            compute_vjp_flops,
        )
        return _render(table, title, compute_flops, compute_vjp_flops)

    return tabulate_fn


def module_paths(
    module: Module,
    rngs: Any,
    *args: Any,
    show_repeated: bool = False,
    mutable: CollectionFilter = DENY_INTERMEDIATES,
    **kwargs: Any,
) -> dict[str, Module]:  # show_repeated: a path maps to one module either way
    """``{'path/to/module': module}`` for every module called by ``module.init(rngs, *args)``
    (``''`` is the root); the modules are unbound copies."""
    method = kwargs.pop("method", None)
    calls, _ = _record_calls(module, rngs, args, kwargs, mutable, method)
    out: dict[str, Module] = {}
    for call in calls:
        key = "/".join(call.path)
        if key not in out:
            out[key] = call.module
    return out
