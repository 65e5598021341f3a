"""tabulate, display and the Module repr."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from plait import nnx


class Dense(nnx.Module):
    def __init__(self, din, dout):
        self.w = nnx.Param(jnp.ones((din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        y = x @ self.w
        return y + jnp.broadcast_to(self.b[...], y.shape)


class Stats(nnx.Module):
    def __init__(self, n):
        self.mean = nnx.BatchStat(jnp.zeros((n,)))

    def __call__(self, x):
        self.mean[...] = x.mean(axis=0)  # a state update during the call
        return x


class Net(nnx.Module):
    def __init__(self):
        self.layers = nnx.List([Dense(2, 4), Stats(4)])
        self.head = Dense(4, 1)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def _rows(table: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in table.splitlines()
        if line.startswith("│")
    ]


def test_tabulate_lists_calls_shapes_and_variable_counts():
    net = Net()
    table = nnx.tabulate(net, jnp.ones((3, 2)))
    rows = _rows(table)
    assert rows[0] == ["path", "type", "inputs", "outputs", "Param", "BatchStat"]
    body = {row[0]: row for row in rows[1:-1]}
    assert list(body) == ["", "layers/0", "layers/1", "head"]  # call order, root first
    assert body[""][1:4] == ["Net", "float32[3,2]", "float32[3,1]"]
    assert body["layers/0"][4] == "12 (48 B)"  # 2*4 + 4 float32
    assert body["layers/1"][5] == "4 (16 B)"
    assert body[""][4:] == ["17 (68 B)", "4 (16 B)"]
    assert rows[-1][3:] == ["Total", "17 (68 B)", "4 (16 B)"]
    assert "Total Parameters: 21 (84 B)" in table
    # nothing was computed for real and the model was not modified
    assert float(jnp.abs(net.layers[1].mean[...]).sum()) == 0.0
    assert "hidden" not in vars(net)


def test_tabulate_depth_and_flops():
    net = Net()
    shallow = _rows(nnx.tabulate(net, jax.ShapeDtypeStruct((3, 2), jnp.float32), depth=1))
    assert [row[0] for row in shallow[1:-1]] == ["", "head"]
    rows = _rows(nnx.tabulate(net, jnp.ones((3, 2)), compute_flops=True, compute_vjp_flops=True))
    header = rows[0]
    head = next(row for row in rows if row[0] == "head")
    flops = int(head[header.index("flops")].replace(",", ""))
    vjp_flops = int(head[header.index("vjp_flops")].replace(",", ""))
    assert flops >= 2 * 3 * 4 * 1  # at least the matmul's multiply-adds
    assert vjp_flops > flops


def test_tabulate_title_and_method():
    class TwoMethods(Dense):
        def encode(self, x):
            return 2 * self(x)

    table = nnx.tabulate(TwoMethods(2, 2), jnp.ones((1, 2)), method="encode",
                         table_kwargs={"title": "custom"})
    assert table.lstrip().startswith("custom")
    assert [row[0] for row in _rows(table)[1:-1]] == [""]


def test_display_and_repr(capsys):
    net = Net()
    nnx.display(net)
    printed = capsys.readouterr().out
    assert printed.startswith("Net(  # Param: 17 (68 B), BatchStat: 4 (16 B)")
    assert "[0]=Dense(" in printed and "w=Param(float32[2,4])" in printed
    assert printed.strip() == repr(net)


def test_tabulate_propagates_the_model_error():
    class Checked(nnx.Module):
        def __call__(self, x):
            raise ValueError(f"bad input {x.shape}")

    with pytest.raises(ValueError, match=r"bad input \(3, 5\)"):
        nnx.tabulate(Checked(), jnp.ones((3, 5)))
