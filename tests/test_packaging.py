"""What an install ships of static/: every folder of it (the snippet's, the demo's) is a package
setuptools is told about, with its files as package data. A folder shipped only as another's
data (`"demo/*"`) made every `pip install` print a 40-line warning that it is no configured
package, and a later setuptools leaves such a folder out."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from tests.conftest import ROOT

NOT_SHIPPED = {"node_modules"}  # static/'s build tooling


def test_every_folder_of_static_ships_as_a_configured_package_with_its_files() -> None:
    # Given the packaging configuration and the folders of static/
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"edge.static": "static"}
    static = ROOT / "static"
    folders = []
    for walked, subfolders, _ in os.walk(static):
        subfolders[:] = sorted(name for name in subfolders if name not in NOT_SHIPPED)
        folders.append(Path(walked))

    for folder in folders:
        # Then each is a package of its own, whose package data matches every file it holds
        package = ".".join(["edge.static", *folder.relative_to(static).parts])
        assert package in setuptools["packages"], f"{package} is not in [tool.setuptools]"
        patterns = setuptools["package-data"].get(package, [])
        files = [path for path in folder.iterdir() if path.is_file()]
        unshipped = [f.name for f in files if not any(f.match(p) for p in patterns)]
        if folder != static:  # static/ itself holds build files (package.json, terser.json)
            assert not unshipped, f"{package}: not shipped: {unshipped}"
    assert "edge.static.demo" in setuptools["packages"]
