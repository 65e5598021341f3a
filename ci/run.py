#!/usr/bin/env python3
"""plait's one entry point for humans and CI. Standard library only.

    python3 ci/run.py main                 # train the vision example on MNIST
    python3 ci/run.py test                 # every package, each in its own exact environment
    python3 ci/run.py test plait-core      # one package (alias: ci/test plait-core)
    python3 ci/run.py test --since REF     # only packages affected by changes since REF
    python3 ci/run.py check                # repository guards only

The first run installs uv into .cache/uv-bootstrap when uv is not on PATH, so a
machine with Python and pip but no uv works.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "ci"))

from affected import affected_packages, load_members, topological_order  # noqa: E402

UV_SPEC = "uv>=0.9,<0.14"
BOOTSTRAP = ROOT / ".cache" / "uv-bootstrap"
RESULTS = ROOT / ".cache" / "ci-results"
CORE_ALLOWED_THIRD_PARTY = {"jax", "jaxlib", "numpy", "msgpack", "typing_extensions"}


def log(msg: str) -> None:
    print(f"[ci] {msg}", flush=True)


def find_uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    uv_bin = BOOTSTRAP / ("Scripts" if os.name == "nt" else "bin") / "uv"
    if uv_bin.exists():
        return str(uv_bin)
    log(f"uv not found on PATH; installing {UV_SPEC} into {BOOTSTRAP.relative_to(ROOT)}")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(BOOTSTRAP)
    except Exception as exc:  # ensurepip missing on some distributions
        sys.exit(
            f"Could not create a virtual environment to bootstrap uv: {exc}\n"
            "Fix: install the venv module (Debian/Ubuntu: apt-get install python3-venv) "
            "or install uv yourself and put it on PATH."
        )
    pip = BOOTSTRAP / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", UV_SPEC], check=True)
    return str(uv_bin)


def uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    if sys.version_info >= (3, 12):
        # Every environment uses the interpreter running this script, so uv never has to
        # look for (or download) one; it may be off PATH, e.g. a pyenv version.
        env.setdefault("UV_PYTHON", sys.executable)
    return env


def find_project_python(wanted: str) -> str:
    """A Python ``wanted`` (e.g. "3.12") on this machine: on PATH or under pyenv.

    Falls back to the bare version, which uv resolves itself (downloading it when it has
    to, which needs access to its download host).
    """
    found = shutil.which(f"python{wanted}")
    if found:
        return found
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        candidates = sorted(
            Path(root, "versions").glob(f"{wanted}*/bin/python{wanted}"),
            key=lambda p: tuple(int(x) for x in p.parts[-3].split(".") if x.isdigit()),
        )
        if candidates:
            return str(candidates[-1])
    return wanted


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, **kw)


# --------------------------------------------------------------------------- guards


def check_no_namespace_init() -> list[str]:
    bad = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("packages/*/src/plait/__init__.py"))
    bad += sorted(
        str(p.relative_to(ROOT)) for p in ROOT.glob("packages/*/src/plait/examples/__init__.py")
    )
    return [
        f"{p}: plait is a namespace package shared by every distribution; delete this file "
        "or the other packages vanish from `plait.`"
        for p in bad
    ]


def check_core_imports() -> list[str]:
    """plait.core may import only the standard library, its allowed deps, and itself (relatively)."""
    errors = []
    stdlib = set(sys.stdlib_module_names)
    core = ROOT / "packages" / "core" / "src" / "plait" / "core"
    for path in sorted(core.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top in CORE_ALLOWED_THIRD_PARTY:
                    continue
                rel = path.relative_to(ROOT)
                errors.append(
                    f"{rel}:{node.lineno}: core imports {name!r}; plait.core may import only the "
                    f"standard library, {sorted(CORE_ALLOWED_THIRD_PARTY)} and its own modules "
                    "through relative imports (`from ._graph import split`)."
                )
    return errors


def cmd_check(uv: str | None = None) -> int:
    errors = check_no_namespace_init() + check_core_imports()
    for e in errors:
        print(f"[ci] check failed: {e}", flush=True)
    if uv is not None:
        if run([uv, "lock", "--check"], env=uv_env()).returncode != 0:
            errors.append("uv.lock is stale: run `uv lock` and commit it")
            print("[ci] check failed: uv.lock is stale; run `uv lock` and commit it.", flush=True)
    if not errors:
        log("checks passed")
    return 1 if errors else 0


# --------------------------------------------------------------------------- tests


def count_junit(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a pytest junit xml file."""
    if not path.exists():
        return 0, 0, 0
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failed = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


def test_package(uv: str, member, extra_pytest: list[str]) -> tuple[int, int, int, str]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    xml = RESULTS / f"{member.name}.xml"
    xml.unlink(missing_ok=True)
    env = uv_env()
    env["UV_PROJECT_ENVIRONMENT"] = str(ROOT / ".venvs" / member.name)
    cmd = [
        uv, "run", "--locked", "--exact", "--package", member.name, "--group", "dev",
        "pytest", str(member.path.relative_to(ROOT) / "tests"),
        f"--junitxml={xml}", "-q", "-rfE", *extra_pytest,
    ]
    t0 = time.monotonic()
    rc = run(cmd, env=env).returncode
    passed, failed, skipped = count_junit(xml)
    status = "ok"
    if rc == 5 or passed + failed == 0:
        status, failed = "no tests ran", max(failed, 1)
    elif rc != 0:
        status = f"pytest exit {rc}"
        failed = max(failed, 1)
    log(f"{member.name}: {passed} passed, {failed} failed, {skipped} skipped "
        f"({time.monotonic() - t0:.0f}s) [{status}]")
    return passed, failed, skipped, status


def cmd_test(args) -> int:
    uv = find_uv()
    rc_check = cmd_check(uv)
    members = load_members(ROOT)
    if args.packages:
        unknown = [p for p in args.packages if p not in members]
        if unknown:
            sys.exit(f"unknown package(s) {unknown}; known: {sorted(members)}")
        names = args.packages
    elif args.since:
        names = affected_packages(ROOT, args.since)
        log(f"affected since {args.since}: {names or 'none'}")
    else:
        names = list(members)
    order = [n for n in topological_order(members) if n in names]
    totals = [0, 0, 0]
    failures = []
    for name in order:
        p, f, s, status = test_package(uv, members[name], args.pytest_args)
        totals[0] += p
        totals[1] += f
        totals[2] += s
        if status != "ok":
            failures.append(f"{name}: {status}")
    if not args.packages and not args.since:
        env = uv_env()
        env["UV_PROJECT_ENVIRONMENT"] = str(ROOT / ".venvs" / "all")
        ok = run([uv, "sync", "--locked", "--all-packages", "--quiet"], env=env).returncode == 0
        ok = ok and run([uv, "pip", "check", "--python", str(ROOT / ".venvs/all/bin/python")],
                        env=env).returncode == 0
        if not ok:
            failures.append("workspace: `uv sync --all-packages` / `uv pip check` failed")
            totals[1] += 1
    if rc_check:
        failures.append("repository checks")
        totals[1] += 1
    for f in failures:
        log(f"FAILED {f}")
    if not order and not failures:
        log("no package selected; nothing to test")
        totals[1] += 0
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped", flush=True)
    if totals[0] == 0 and order:
        return 1
    return 1 if failures else 0


def cmd_main(args) -> int:
    uv = find_uv()
    env = uv_env()
    env["UV_PROJECT_ENVIRONMENT"] = str(ROOT / ".venvs" / "all")
    cmd = [uv, "run", "--locked", "--all-packages", "plait-vision", *args.rest]
    return run(cmd, env=env).returncode


def reexec_under_project_python() -> None:
    """Run this script under the project's Python (>= 3.12) when started by an older one.

    The guards parse plait's sources, which use 3.12 syntax; uv finds (or installs) the
    interpreter named by .python-version.
    """
    if sys.version_info >= (3, 12) or os.environ.get("PLAIT_CI_REEXEC"):
        return
    uv = find_uv()
    wanted = (ROOT / ".python-version").read_text().strip()
    env = uv_env()
    env["PLAIT_CI_REEXEC"] = "1"
    log(f"python {platform.python_version()} is older than the project's {wanted}; re-running under {wanted} via uv")
    python = find_project_python(wanted)
    cmd = [uv, "run", "--no-project", "--python", python, "python", str(Path(__file__).resolve()), *sys.argv[1:]]
    sys.stdout.flush()
    sys.exit(subprocess.run(cmd, cwd=ROOT, env=env).returncode)


def main(argv: list[str] | None = None) -> int:
    reexec_under_project_python()
    parser = argparse.ArgumentParser(prog="ci/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("test", help="run package tests, each in its own exact environment")
    t.add_argument("packages", nargs="*", help="distribution names (default: all)")
    t.add_argument("--since", help="only packages affected by changes since this git ref")
    t.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[],
                   help="extra arguments passed to pytest (must come last)")
    m = sub.add_parser("main", help="train the vision example on MNIST")
    m.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for plait-vision")
    sub.add_parser("check", help="repository guards (namespace package, core imports, lock)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["main"]:  # everything after `main` belongs to plait-vision, verbatim
        return cmd_main(argparse.Namespace(rest=argv[1:]))
    args = parser.parse_args(argv)
    if args.command == "test":
        return cmd_test(args)
    if args.command == "main":
        return cmd_main(args)
    return cmd_check(find_uv())


if __name__ == "__main__":
    sys.exit(main())
