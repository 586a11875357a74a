"""Every module of src/ imports on its own: the fast tier (bash scripts/test.sh) loads each one at least once."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import src


def source_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(src.__path__, prefix="src."))


def test_the_walk_finds_every_package_and_command():
    names = source_modules()
    assert {"src.schema", "src.web.prediction", "src.batch.spark", "src.pipeline.cli"} <= set(names)
    assert len(names) > 60


@pytest.mark.parametrize("name", source_modules())
def test_the_module_imports(name):
    module = importlib.import_module(name)
    assert module.__name__ == name and module.__doc__, f"{name} has no docstring"
