"""plait.core works when copied into another framework under another package name."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import Object, Param, struct, testing

CORE = Path(__file__).resolve().parent.parent / "src" / "plait" / "core"

SMOKE = textwrap.dedent(
    """
    import sys
    sys.modules["plait"] = None  # any absolute `plait` import now fails loudly

    import jax
    import jax.numpy as jnp
    import numpy as np
    import vendored_core_xyz as core
    from vendored_core_xyz import serialization, struct

    assert core.__name__ == "vendored_core_xyz" and core.__version__

    class Block(core.Object):
        def __init__(self, shared):
            self.w = core.Param(jnp.ones((2, 2)))
            self.shared = shared

    shared = core.Param(jnp.zeros(2))
    model = [Block(shared), Block(shared)]
    graphdef, state = core.split(model)
    copy = core.testing.assert_split_merge_roundtrip(model)
    assert copy[0].shared is copy[1].shared, "shared Variable must stay shared"
    core.testing.assert_serialization_roundtrip(state)

    data = serialization.to_bytes(jax.tree.map(lambda x: x + 3, state))
    core.update(model, serialization.from_bytes(state, data))
    np.testing.assert_array_equal(model[1].w.value, 4 * np.ones((2, 2)))
    assert float(model[0].shared.value[0]) == 3.0

    @struct.dataclass
    class Batch:
        x: jax.Array
    assert float(jax.jit(lambda b: b.x.sum())(Batch(jnp.ones(3)))) == 3.0
    assert core.FrozenDict(a=1).copy({"b": 2}) == {"a": 1, "b": 2}

    if hasattr(core, "jit"):  # the lifting engine, once present
        @core.jit
        def scale(m):
            m.w.value = m.w.value * 2
            return m.w.value.sum()
        assert float(scale(model[0])) == 32.0  # w was 4 after the restore above
        assert float(model[0].w.value[0, 0]) == 8.0, "jit must write updates back"
    print("vendored smoke ok")
    """
)


def test_core_runs_under_another_package_name(tmp_path):
    shutil.copytree(
        CORE, tmp_path / "vendored_core_xyz", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", SMOKE],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "JAX_PLATFORMS": "cpu", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "vendored smoke ok" in result.stdout


# The conformance kit a framework reuses (plait.core.testing) must itself catch breakage.


class Pair(Object):
    def __init__(self):
        self.a = Param(jnp.ones(2))
        self.b = self.a


def test_split_merge_roundtrip_checks_sharing():
    copy = testing.assert_split_merge_roundtrip(Pair())
    assert copy.a is copy.b and isinstance(copy, Pair)


def test_tree_assertions_report_the_path():
    testing.assert_trees_all_close({"w": np.ones(2)}, {"w": np.ones(2) + 1e-9})
    testing.assert_trees_all_close({"w": jnp.ones(2, jnp.bfloat16)}, {"w": np.ones(2)})
    with pytest.raises(AssertionError, match=r"Leaf at \['w'\]\[1\] differs"):
        testing.assert_trees_all_close({"w": [0.0, np.ones(2)]}, {"w": [0.0, np.zeros(2)]})
    with pytest.raises(AssertionError, match="different structures"):
        testing.assert_trees_all_equal({"w": 1}, {"v": 1})
    with pytest.raises(AssertionError, match=r"shape \(3,\) != expected shape \(2,\)"):
        testing.assert_trees_all_equal([np.ones(3)], [np.ones(2)])
    with pytest.raises(AssertionError, match="'x' != expected 'y'"):
        testing.assert_trees_all_equal(["x"], ["y"])


def test_serialization_roundtrip_helper():
    @struct.dataclass
    class Holder:
        w: np.ndarray

    restored = testing.assert_serialization_roundtrip(Holder(np.arange(3.0)))
    np.testing.assert_array_equal(restored.w, np.arange(3.0))
