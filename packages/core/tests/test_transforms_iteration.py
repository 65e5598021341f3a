"""vmap / pmap / scan with StateAxes, RNG splitting, Carry, against pure-JAX references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import core as pc


class Count(pc.Variable):
    pass


class Noisy(pc.Object):
    """A linear map with a call counter and its own RNG stream."""

    def __init__(self, kernel: jax.Array, seed: int | jax.Array = 0) -> None:
        self.kernel = pc.Param(kernel)
        self.count = Count(jnp.array(0))
        self.rngs = pc.Rngs(noise=seed)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count[...] += 1
        return x @ self.kernel[...] + 0.1 * jax.random.normal(self.rngs.noise(), (self.kernel.shape[-1],))


def test_vmap_over_stacked_weights_matches_jax_vmap():
    kernels = jax.random.normal(jax.random.key(0), (5, 2, 3))
    x = jax.random.normal(jax.random.key(1), (5, 2))
    model = Noisy(kernels)
    axes = pc.StateAxes({pc.Param: 0, ...: None})
    y = pc.vmap(lambda m, x: x @ m.kernel[...], in_axes=(axes, 0), out_axes=1)(model, x)
    np.testing.assert_allclose(y, jax.vmap(lambda k, x: x @ k, out_axes=1)(kernels, x), rtol=1e-6)


def test_vmap_ensemble_with_split_rngs_gives_each_member_its_own_noise():
    model = Noisy(jnp.eye(3), seed=0)
    axes = pc.StateAxes({pc.RngState: 0, (pc.Param, Count): None})

    @pc.split_rngs(splits=4)
    @pc.vmap(in_axes=(axes, None))
    def forward(m, x):
        return m(x)

    y1 = forward(model, jnp.ones(3))
    y2 = forward(model, jnp.ones(3))
    assert y1.shape == (4, 3)
    assert not np.allclose(y1[0], y1[1])  # split keys: different noise per member
    assert not np.allclose(y1, y2)  # the streams advanced between calls
    assert int(model.count[...]) == 2  # broadcast counter: one update per call
    assert model.rngs.noise.key.shape == ()  # split_rngs restored the unsplit stream
    # Broadcast RNG state: every member sees the same noise.
    same = pc.vmap(lambda m, x: m(x), in_axes=(None, None), axis_size=3)(model, jnp.ones(3))
    np.testing.assert_allclose(same[0], same[1])


def test_vmap_creates_a_stacked_model_and_maps_its_updates():
    keys = jax.random.split(jax.random.key(0), 4)
    ensemble = pc.vmap(lambda k: Noisy(jax.random.normal(k, (2, 2)), seed=k))(keys)
    assert ensemble.kernel.shape == (4, 2, 2) and ensemble.count.shape == (4,)
    ref = jax.vmap(lambda k: jax.random.normal(k, (2, 2)))(keys)
    np.testing.assert_allclose(ensemble.kernel[...], ref)
    pc.vmap(lambda m, x: m(x), in_axes=(0, None))(ensemble, jnp.ones(2))
    np.testing.assert_array_equal(ensemble.count[...], jnp.ones(4, dtype=jnp.int32))


def test_vmap_transform_metadata_moves_partition_names():
    class W(pc.Object):
        def __init__(self):
            self.p = pc.Param(jnp.ones((3, 4, 5)), sharding_names=("a", "b", None))

    seen = {}

    @pc.vmap(in_axes=1, transform_metadata={pc.PARTITION_NAME: "b"})
    def f(m):
        seen["inner"] = (m.p.shape, m.p.sharding_names)
        return m.p[...].sum()

    w = W()
    f(w)
    assert seen["inner"] == ((3, 5), ("a", None))
    assert w.p.sharding_names == ("a", "b", None)


def test_vmap_inconsistent_aliasing_is_an_error():
    model = Noisy(jnp.ones((4, 2, 2)))
    with pytest.raises(pc.PlaitCoreError, match="same Noisy object is reached through"):
        pc.vmap(lambda a, b: 0.0, in_axes=(0, None))(model, {"again": model})
    with pytest.raises(pc.PlaitCoreError, match="out_axes"):
        pc.vmap(lambda m: m, in_axes=0, out_axes=1)(Stacked(4))


def test_vmap_bad_prefix_and_unmatched_filter():
    model = Noisy(jnp.ones((2, 2, 2)))
    with pytest.raises(pc.PlaitCoreError, match="in_axes=.* does not fit"):
        pc.vmap(lambda a, b: a, in_axes=(0, 0, 0))(jnp.ones(2), jnp.ones(2))
    with pytest.raises(pc.PlaitCoreError, match="matched none of the filters"):
        pc.vmap(lambda m: 0, in_axes=(pc.StateAxes({pc.Param: 0}),))(model)
    with pytest.raises(pc.PlaitCoreError, match="only apply to graph nodes"):
        pc.vmap(lambda x: x, in_axes=(pc.StateAxes({...: 0}),))(jnp.ones(2))


class Stacked(pc.Object):
    def __init__(self, n: int) -> None:
        self.w = pc.Param(jnp.arange(n * 4.0).reshape(n, 2, 2))
        self.calls = Count(jnp.zeros(n, dtype=jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.calls[...] += 1
        return x @ self.w[...]


def test_pmap_over_simulated_devices():
    n = jax.local_device_count()
    model = Stacked(n)
    x = jnp.ones((n, 2))
    y = pc.pmap(lambda m, x: m(x), in_axes=(0, 0), axis_name="d")(model, x)
    np.testing.assert_allclose(y, jnp.einsum("nd,nde->ne", x, model.w[...]))
    np.testing.assert_array_equal(model.calls[...], jnp.ones(n, dtype=jnp.int32))


class Block(pc.Object):
    def __init__(self, key: jax.Array) -> None:
        self.w = pc.Param(jax.random.normal(key, (3, 3)) * 0.5)
        self.seen = pc.BatchStat(jnp.zeros(3))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.seen[...] = x
        return jnp.tanh(x @ self.w[...])


def test_scan_over_layers_with_carry_matches_a_python_loop():
    keys = jax.random.split(jax.random.key(0), 4)
    stack = pc.vmap(Block)(keys)
    ws = stack.w[...]

    @pc.scan(in_axes=(pc.Carry, 0), out_axes=(pc.Carry, 0))
    def forward(x, layer):
        y = layer(x)
        return y, y.sum()

    x0 = jnp.array([1.0, -1.0, 0.5])
    x, sums = forward(x0, stack)
    ref, ref_inputs = x0, []
    for i in range(4):
        ref_inputs.append(ref)
        ref = jnp.tanh(ref @ ws[i])
    np.testing.assert_allclose(x, ref, rtol=1e-5)
    assert sums.shape == (4,)
    np.testing.assert_allclose(stack.seen[...], jnp.stack(ref_inputs), rtol=1e-5)  # scanned updates


def test_scan_carried_object_and_rngs_advance():
    rngs = pc.Rngs(3)
    acc = pc.Variable(jnp.array(0.0))

    @pc.scan(in_axes=(pc.Carry, 0), out_axes=(pc.Carry, 0))
    def step(carry, x):
        r, a = carry
        a[...] += x
        return (r, a), jax.random.uniform(r())

    (r, a), draws = step((rngs, acc), jnp.arange(5.0))
    assert r is rngs and a is acc
    assert float(acc[...]) == 10.0
    assert int(rngs.default.count[...]) == 5
    assert len(set(np.asarray(draws).tolist())) == 5
    ref = [jax.random.uniform(jax.random.fold_in(jax.random.key(3), i)) for i in range(5)]
    np.testing.assert_allclose(draws, jnp.stack(ref))


def test_scan_state_axes_carry_and_broadcast_state():
    class Cell(pc.Object):
        def __init__(self):
            self.w = pc.Param(jnp.arange(4.0).reshape(4, 1) * jnp.ones((4, 2)))
            self.total = pc.BatchStat(jnp.zeros(2))
            self.calls = Count(jnp.array(0))

    cell = Cell()
    axes = pc.StateAxes({pc.Param: 0, pc.BatchStat: pc.Carry, Count: None})

    @pc.scan(in_axes=(axes,), out_axes=0)
    def run(c):
        c.total[...] += c.w[...]
        c.calls[...] += 1
        return c.total[...]

    totals = run(cell)
    np.testing.assert_allclose(totals[:, 0], jnp.cumsum(jnp.arange(4.0)))
    np.testing.assert_allclose(cell.total[...], jnp.full(2, 6.0))
    assert int(cell.calls[...]) == 4  # broadcast object state is threaded through iterations


def test_scan_errors():
    with pytest.raises(pc.PlaitCoreError, match="Carry appears in only one"):
        pc.scan(lambda c, x: (c, x), in_axes=(pc.Carry, 0), out_axes=0)
    with pytest.raises(pc.PlaitCoreError, match="cannot broadcast an output"):
        pc.scan(lambda c, x: (c, x), out_axes=(pc.Carry, None))
    with pytest.raises(pc.PlaitCoreError, match="Carry must be a top-level"):
        pc.scan(lambda c, x: (c, x), in_axes=((pc.Carry,), 0), out_axes=(pc.Carry, 0))
    v = pc.Variable(jnp.array(0.0))
    swap = pc.scan(lambda c, x: (pc.Variable(c[...] + x), x))
    with pytest.raises(pc.PlaitCoreError, match="must come back as the same objects"):
        swap(v, jnp.arange(3.0))
    grow = pc.scan(lambda c, x: (c, c.__setattr__("extra", pc.Variable(x))))
    holder = Block(jax.random.key(0))
    with pytest.raises(pc.PlaitCoreError, match="changed between iterations"):
        grow(holder, jnp.arange(3.0))


def test_vmap_decorated_init_and_structural_updates():
    class WeightStack(pc.Object):
        @pc.vmap
        def __init__(self, seed):
            self.kernel = pc.Param(jax.random.uniform(jax.random.key(seed), (2, 3)))
            self.count = Count(jnp.array(0))

        @pc.vmap(in_axes=0, out_axes=1)
        def __call__(self, x):
            self.count[...] += 1
            self.note = "seen"  # a structural change inside vmap, propagated out
            return x @ self.kernel[...]

    weights = WeightStack(jnp.arange(6))
    assert weights.kernel.shape == (6, 2, 3)
    x = jax.random.normal(jax.random.key(1), (6, 2))
    y = weights(x)
    np.testing.assert_allclose(y, jnp.einsum("nd,nde->en", x, weights.kernel[...]), rtol=1e-5)
    assert weights.note == "seen"
    np.testing.assert_array_equal(weights.count[...], jnp.ones(6, dtype=jnp.int32))
