import json

import pytest
from plait.bench._report import Report


def test_rows_carry_per_round_ratios_to_floor_and_peers():
    report = Report()
    row = report.add("mlp", "depth=5 sgd", "plait nnx.jit", values=[2.0, 4.0, 2.2], unit="ms",
                     floor=[2.0, 2.0, 2.0], peers={"flax": ("flax nnx.jit", [20.0, 40.0, 22.0])})
    assert row["median"] == 2.2 and row["min"] == 2.0 and row["max"] == 4.0
    assert row["floor"] == pytest.approx({"median": 1.1, "min": 1.0, "max": 2.0})
    assert row["vs"]["flax"]["against"] == "flax nnx.jit"
    assert row["vs"]["flax"]["median"] == pytest.approx(0.1)


def test_compare_shows_the_change_against_an_earlier_run(tmp_path):
    old = Report()
    old.add("graph", "split", "plait", values=[2.0], unit="ms")
    path = tmp_path / "old.json"
    old.write(path, meta={})
    new = Report(json.loads(path.read_text()))
    new.add("graph", "split", "plait", values=[1.0], unit="ms")
    new.add("graph", "merge", "plait", values=[1.0], unit="ms")
    table = new.tables()[0]
    column = [c for c in table.columns if c.header == "vs previous"][0]
    assert list(column.cells) == ["-50.0%", "new"]


def test_peer_columns_appear_only_for_peers_that_ran():
    report = Report()
    report.add("cnn", "c", "plait nnx.jit", values=[1.0], unit="ms",
               peers={"equinox": ("equinox filter_jit", [2.0])})
    headers = [c.header for c in report.tables()[0].columns]
    assert "x equinox" in headers and "x flax" not in headers


def test_adjacent_floor_ratios_make_the_peer_ratio_a_ratio_of_ratios():
    report = Report()
    row = report.add("mlp", "c", "plait nnx.jit", values=[1.0, 9.0], unit="ms",
                     floor_ratios=[1.1, 1.3], peers={"flax": ("flax nnx.jit", [11.0, 13.0])})
    assert row["floor"] == pytest.approx({"median": 1.2, "min": 1.1, "max": 1.3})
    assert row["vs"]["flax"]["median"] == pytest.approx(0.1)
