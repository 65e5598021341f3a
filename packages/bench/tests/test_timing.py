import json
import time

import pytest

from plait.bench import _timing
from plait.bench.__main__ import main


def test_interleaved_ratios_are_per_round():
    calls = []

    def fast():
        calls.append("fast")
        time.sleep(0.001)

    def slow():
        calls.append("slow")
        time.sleep(0.003)

    res = _timing.interleaved({"fast": fast, "slow": slow}, floor="fast", rounds=3, inner=2, warmup=1)
    assert len(res["slow"].seconds) == 3 and len(res["slow"].ratios) == 3
    assert res["fast"].ratios == [1.0, 1.0, 1.0]
    assert res["slow"].summary()["ratio_median"] > 1.5
    # rotation: round 1 starts with the second variant
    assert calls[6:8] == ["slow", "slow"]  # 2 warm-up calls, then round 0 (4 calls)


def test_json_and_compare(tmp_path, capsys):
    first = tmp_path / "a.json"
    assert main(["--suite", "rss", "--json", str(first), "--no-peers"]) == 0
    data = json.loads(first.read_text())
    assert data["rows"][0]["suite"] == "rss" and data["rows"][0]["median"] > 10
    second = tmp_path / "b.json"
    assert main(["--suite", "rss", "--json", str(second), "--compare", str(first), "--no-peers"]) == 0
    assert "%" in capsys.readouterr().out


def test_unknown_suite_is_rejected():
    with pytest.raises(SystemExit):
        main(["--suite", "nope"])
