import pytest
from plait.bench import _timing


class FakeClock:
    """A clock that advances only when a timed variant runs (no real timing involved)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleaved_records_one_value_per_round_and_rotates_the_order():
    clock = FakeClock()
    calls = []
    cost = {"fast": 1.0, "slow": 3.0}

    def variant(name):
        def call():
            calls.append(name)
            clock.now += cost[name]

        return call

    res = _timing.interleaved({"fast": variant("fast"), "slow": variant("slow")}, rounds=3,
                              inner=2, warmup=1, clock=clock)
    assert res["fast"].seconds == [1.0, 1.0, 1.0]
    assert res["slow"].seconds == [3.0, 3.0, 3.0]
    # 2 warm-up calls, round 0 in the given order, round 1 starting with the second variant.
    assert calls[:6] == ["fast", "slow", "fast", "fast", "slow", "slow"]
    assert calls[6:10] == ["slow", "slow", "fast", "fast"]


def test_per_round_ratio_cancels_a_round_that_is_slow_for_everybody():
    floor = [1.0, 10.0, 1.0]  # round 1: the machine was busy
    variant = [1.2, 12.0, 1.2]
    ratio = _timing.per_round_ratio(variant, floor)
    assert ratio == pytest.approx({"median": 1.2, "min": 1.2, "max": 1.2})


def test_per_round_ratio_rejects_series_of_different_lengths():
    with pytest.raises(ValueError, match="equally long"):
        _timing.per_round_ratio([1.0, 2.0], [1.0])


def test_interleaved_rejects_zero_rounds():
    with pytest.raises(ValueError, match="rounds >= 1"):
        _timing.interleaved({"a": lambda: None}, rounds=0, inner=1)


def test_rotation_wraps_around():
    assert _timing.rotation(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert _timing.rotation(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_calibrate_inner_scales_with_the_cost_of_one_call():
    clock = FakeClock()

    def call():
        clock.now += 0.01

    assert _timing.calibrate_inner(call, lambda x: x, target_s=0.05, clock=clock) == 5
    assert _timing.calibrate_inner(call, lambda x: x, target_s=0.001, clock=clock) == 1
    assert _timing.calibrate_inner(call, lambda x: x, target_s=100.0, clock=clock) == 1000


def test_interleaved_once_collects_each_variants_own_durations():
    out = _timing.interleaved_once({"a": lambda: {"x": 1.0}, "b": lambda: {"x": 2.0}},
                                   rounds=2, warmup=0)
    assert out == {"a": [{"x": 1.0}, {"x": 1.0}], "b": [{"x": 2.0}, {"x": 2.0}]}


def test_floor_is_timed_next_to_each_variant_and_ratios_use_the_adjacent_block():
    clock = FakeClock()
    calls = []
    load = {"factor": 1.0}
    cost = {"floor": 1.0, "a": 2.0, "b": 3.0}

    def variant(name):
        def call():
            calls.append(name)
            clock.now += cost[name] * load["factor"]
            if name == "a":
                load["factor"] = 10.0  # the machine gets busy right after a's block

        return call

    res = _timing.interleaved({n: variant(n) for n in cost}, rounds=1, inner=1, warmup=0,
                              clock=clock, floor="floor")
    # Round 0: (floor, a) then (b, floor): the floor runs once next to each variant.
    assert calls == ["floor", "a", "b", "floor"]
    assert res["a"].floor_ratios == [2.0]
    assert res["b"].floor_ratios == [3.0]  # b and its floor block both ran under load
    assert res["floor"].floor_ratios == [1.0]
    assert res["floor"].seconds == [5.5]  # median of its two blocks (1 and 10)


def test_unknown_floor_is_rejected():
    with pytest.raises(ValueError, match="not one of the variants"):
        _timing.interleaved({"a": lambda: None}, rounds=1, inner=1, floor="floor")
