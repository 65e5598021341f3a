"""Smoke tests: every suite runs end to end with tiny models (a broken suite fails CI).

These check that the suites run and report what they should, not the numbers.
"""

import importlib.util
import json

import pytest
from plait.bench.__main__ import SUITE_NAMES, main

PEERS = [name for name in ("flax", "equinox") if importlib.util.find_spec(name) is not None]

EXPECTED_VARIANTS = {
    "mlp": {"floor (jax.jit)", "floor (linen layout)", "plait nnx.jit", "plait nnx split/merge",
            "plait linen"},
    "graph": {"plait"},
    "compile": {"floor (jax)", "plait nnx", "plait linen"},
    "cnn": {"floor (jax.jit)", "plait nnx.jit", "plait linen"},
    "checkpoint": {"floor (numpy)", "plait"},
    "rss": {"floor (jax.jit)", "plait nnx", "plait linen", "plait-bench"},
}


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_each_suite_runs_with_tiny_models(suite, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--tiny", "--suite", suite, "--json", str(out), "--no-peers", "--rounds", "1",
                 "--optimizers", "adam", "--tmpdir", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {r["variant"] for r in rows} == EXPECTED_VARIANTS[suite]
    assert all(r["suite"] == suite and r["median"] > 0 for r in rows)
    floors = [r for r in rows if r["variant"].startswith("floor (jax")]
    assert all(r["floor"]["median"] == 1.0 for r in floors)
    assert data["meta"]["settings"]["tiny"] is True
    if suite == "mlp":
        linen = next(r for r in rows if r["variant"] == "plait linen")
        assert linen["vs"]["same layout"]["median"] > 0


@pytest.mark.skipif(not PEERS, reason="the optional peers (flax, equinox) are not installed")
@pytest.mark.parametrize("suite", ["mlp", "graph", "cnn"])
def test_peer_variants_run_and_are_compared(suite, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["--tiny", "--suite", suite, "--json", str(out), "--rounds", "1",
                 "--optimizers", "adam"]) == 0
    rows = json.loads(out.read_text())["rows"]
    compared = {lib for r in rows if r["variant"].startswith("plait") for lib in r.get("vs", {})}
    assert compared == set(PEERS)


def test_compare_prints_the_change(tmp_path, capsys):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    args = ["--tiny", "--suite", "graph", "--rounds", "1", "--no-peers"]
    assert main([*args, "--json", str(first)]) == 0
    assert main([*args, "--json", str(second), "--compare", str(first)]) == 0
    assert "vs previous" in capsys.readouterr().out


def test_unknown_suite_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["--suite", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
