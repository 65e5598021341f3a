import tomllib
from pathlib import Path

import plait.core as core


def test_version_literal_matches_pyproject():
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    assert core.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]
