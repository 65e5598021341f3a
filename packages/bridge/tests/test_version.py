import tomllib
from pathlib import Path

import plait.bridge as pkg


def test_version_matches_pyproject():
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    assert pkg.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]
