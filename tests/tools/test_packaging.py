"""Packaging: the wheel installs nothing but ``labrig``, and every package folder is in it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"labrig": "labrig", "hw": "labrig/hw", "drivers": "labrig/drivers",
         "runtime": "labrig/runtime", "tools": "labrig/tools"}
_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "build", "dist", "*.egg-info",
                                 "labrig-results", ".hypothesis", ".pytest_cache", "tests")


def _can_build_without_isolation() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    return major >= 68 and importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Build a wheel from a copy of the source tree (the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist")]
    if _can_build_without_isolation():
        cmd.append("--no-build-isolation")
    proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("labrig-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_top_level_is_only_labrig(wheel_names: set[str]) -> None:
    top = {n.split("/")[0] for n in wheel_names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"labrig"}
    assert len([t for t in top if t.endswith(".dist-info")]) == 1


def test_wheel_holds_every_package_folder(wheel_names: set[str]) -> None:
    expected = set()
    for folder, prefix in ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO / folder)
            if "__pycache__" not in rel.parts:
                expected.add(f"{prefix}/{rel.as_posix()}")
    assert expected, "no packages found under the root folders"
    assert expected <= wheel_names, sorted(expected - wheel_names)


def test_console_script_declared(wheel_names: set[str]) -> None:
    assert any(n.endswith(".dist-info/entry_points.txt") for n in wheel_names)


def test_installed_namespace_resolves_and_no_generic_names(tmp_path: Path) -> None:
    """Editable (repo folders) or regular (site-packages/labrig/...) install, run from outside
    the checkout so the current directory cannot supply ``tools`` or ``hw``."""
    code = (
        "import importlib, json, labrig.hw, labrig.tools\n"
        "out = {'hw': labrig.hw.__file__, 'tools': labrig.tools.__file__, 'generic': []}\n"
        "for name in ('tools', 'hw', 'drivers', 'runtime'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    out['generic'].append(name)\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert out["generic"] == []
    for name, folder in (("hw", "hw"), ("tools", "tools")):
        path = Path(out[name]).resolve()
        in_repo = path == (REPO / folder / "__init__.py").resolve()
        in_site = path.parts[-3:] == ("labrig", folder, "__init__.py") \
            and "site-packages" in path.parts
        assert in_repo or in_site, path


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in quickstart.strip().splitlines()]
    assert len(commands) == 2, commands
    ci_lines = {line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()}
    assert commands[1] in ci_lines
