"""The project built as a wheel, for the code that runs elsewhere: Spark's workers and the MLflow answering model.

The wheel is built at run time from the checkout this code runs from (``pyproject.toml`` beside ``src/``) by the
build backend ``pyproject.toml`` declares, installed here (its PEP 517 ``build_wheel`` hook, called in a Python of
its own: nothing is downloaded, and no pip, whose start-up cost four times the build), from a copy of the sources
in a folder of the caller's, so that two builds side by side never share setuptools' build folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from src.batch.core import BatchError

PROJECT = Path(__file__).resolve().parents[2]
# what the build reads besides src/: the project table, its readme, the requirements it declares
_PROJECT_FILES = ("pyproject.toml", "README.md", "requirements.txt")
_BUILD_SECONDS = 300
# PEP 517: the backend is "module" or "module:object"; its build_wheel hook returns the wheel's file name
_HOOK = (
    "import importlib, sys; module, _, obj = sys.argv[1].partition(':'); backend = importlib.import_module(module); "
    "[backend := getattr(backend, part) for part in obj.split('.') if part]; print(backend.build_wheel(sys.argv[2]))"
)


def project_checkout() -> Path | None:
    """The project folder this code runs from, or None when it runs from an installed wheel or a zip."""
    if all((PROJECT / name).is_file() for name in _PROJECT_FILES) and (PROJECT / "src" / "__init__.py").is_file():
        return PROJECT
    return None


def build_wheel(folder: Path) -> Path:
    """Build the project's wheel into ``folder`` (created if needed) and return its path."""
    root = project_checkout()
    if root is None:
        raise BatchError(f"the project's wheel is built from a checkout (pyproject.toml beside src/), not from {PROJECT}")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source"
    shutil.copytree(root / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in _PROJECT_FILES:
        shutil.copy2(root / name, source / name)
    backend = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["build-backend"]
    try:
        result = subprocess.run(
            [sys.executable, "-c", _HOOK, backend, str(folder.resolve())],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=_BUILD_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise BatchError(f"building the project's wheel took more than {_BUILD_SECONDS} s") from err
    finally:
        shutil.rmtree(source, ignore_errors=True)
    wheels = sorted(folder.glob("student_math-*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise BatchError(f"building the project's wheel failed: {(result.stderr or result.stdout).strip()[-2000:]}")
    return wheels[0]
