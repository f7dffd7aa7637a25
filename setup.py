"""Map labrig's root folders onto the ``labrig`` import namespace.

DESIGN.md keeps ``hw/``, ``drivers/``, ``runtime/`` and ``tools/`` at the repository root but
imports them as ``labrig.hw`` ... so nothing generic such as ``tools`` is installed at the top
level.  Sub-packages are found by walking each root for ``__init__.py``, so adding a package
needs no edit here.  Metadata lives in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
ROOTS = {"labrig": "labrig", "labrig.hw": "hw", "labrig.drivers": "drivers",
         "labrig.runtime": "runtime", "labrig.tools": "tools"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in ROOTS.items():
        root = HERE / folder
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root)
            if "__pycache__" in rel.parts:
                continue
            pkg = ".".join([name, *rel.parts]) if rel.parts else name
            packages.append(pkg)
            package_dir[pkg] = str(Path(folder, *rel.parts))
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(packages=PACKAGES, package_dir=PACKAGE_DIR,
      package_data={pkg: ["*.c", "*.h", "py.typed"] for pkg in PACKAGES})
