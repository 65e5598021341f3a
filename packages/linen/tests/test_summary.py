"""tabulate / module_paths."""

import jax
import jax.numpy as jnp
from plait import linen as nn

KEY = jax.random.key(0)


class Dense(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", jax.nn.initializers.ones, (x.shape[-1], self.features))
        return x @ kernel


class Model(nn.Module):
    @nn.compact
    def __call__(self, x):
        self.variable("batch_stats", "count", jnp.zeros, ())
        h = Dense(4)(x)
        return Dense(2)(h)

    def encode(self, x):
        return x


def test_tabulate_lists_calls_shapes_and_parameter_counts():
    text = Model().tabulate(KEY, jnp.ones((16, 9)))
    lines = text.splitlines()
    assert lines[0].strip() == "Model Summary"
    row = next(line for line in lines if "Dense_0" in line)
    assert "float32[16,9]" in row and "float32[16,4]" in row
    assert "kernel: float32[9,4]" in text and "36 (144 B)" in text
    assert "kernel: float32[4,2]" in text and "8 (32 B)" in text
    assert "count: float32[]" in text
    assert lines[-1].strip() == "Total Parameters: 45 (180 B)"


def test_tabulate_depth_sums_nested_variables_into_the_row():
    text = nn.tabulate(Model(), KEY, depth=0)(jnp.ones((1, 9)))
    assert "Dense_0" not in text.split("Total")[0].split("┩")[1].split("│")[1]
    assert "Dense_0/kernel: float32[9,4]" in text and "44 (176 B)" in text


def test_tabulate_flops_and_title():
    text = nn.tabulate(Dense(3), KEY, compute_flops=True, table_kwargs={"title": "T"})(
        jnp.ones((2, 5))
    )
    assert text.splitlines()[0].strip() == "T"
    header = text.splitlines()[2]
    assert "flops" in header
    flops_cell = [line for line in text.splitlines() if "float32[2,5]" in line][0]
    assert any(cell.strip().isdigit() and int(cell) > 0 for cell in flops_cell.split("│"))


def test_module_paths():
    paths = Model().module_paths(KEY, jnp.ones((1, 9)))
    assert list(paths) == ["", "Dense_0", "Dense_1"]
    assert isinstance(paths["Dense_1"], Dense) and paths["Dense_1"].features == 2
