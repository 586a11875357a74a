"""Public APIs only: no private module of a library is imported, no private attribute of one is touched."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import sklearn

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_IMPORT = re.compile(r"^\s*(from\s+[\w.]*\._\w+[\w.]*\s+import|import\s+[\w.]*\._\w+)", re.MULTILINE)


# Names with a leading underscore that their library documents as public: os._exit (the exit of a forked child).
DOCUMENTED = {"_exit"}


def sources() -> list[Path]:
    return [*sorted((ROOT / "src").rglob("*.py")), ROOT / "app.py", ROOT / "gunicorn.conf.py"]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_module_is_imported(path):
    found = PRIVATE_IMPORT.findall(path.read_text())
    assert not found, f"{path.relative_to(ROOT)} imports a private module: {found}"


def _private_names_defined_here() -> set[str]:
    """Every ``_name`` the project defines itself: functions, classes, attributes and names it sets, parameters."""
    names: set[str] = set()
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                if getattr(node.func, "id", getattr(node.func, "attr", "")) in {"setattr", "__setattr__"}:
                    names.add(str(node.args[1].value))  # object.__setattr__(self, "_x", ...) in a frozen dataclass
    return {n for n in names if n.startswith("_")} | DOCUMENTED


def private_attributes(code: str, ours: set[str]) -> list[tuple[int, str]]:
    """``obj._x`` in ``code`` where ``_x`` is no name of the project's own: a library's private attribute."""
    return [
        (node.lineno, node.attr)
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not (node.attr.startswith("__") and node.attr.endswith("__"))
        and node.attr not in ours
    ]


def test_no_private_attribute_of_a_library_is_touched():
    """No private attribute of prometheus_client, pandas, werkzeug (or any other library) is read or written."""
    ours = _private_names_defined_here()
    found = [
        f"{path.relative_to(ROOT)}:{line} .{name}"
        for path in sources()
        for line, name in private_attributes(path.read_text(), ours)
    ]
    assert not found, f"private attributes of libraries used: {found}"


def test_the_check_finds_private_attributes_of_prometheus_client_pandas_and_werkzeug():
    code = (
        "def f(histogram, frame, request):\n"
        "    histogram._buckets[0].inc(1)\n"
        "    return histogram._upper_bounds, frame._mgr, request.environ, request._cached_data\n"
    )
    found = private_attributes(code, _private_names_defined_here())
    assert sorted(name for _, name in found) == ["_buckets", "_cached_data", "_mgr", "_upper_bounds"]


@pytest.mark.parametrize("name", ["LinearRegression", "Ridge", "Lasso"])
def test_the_fast_path_folds_linear_models_recognised_by_public_classes(name):
    from sklearn import linear_model

    from src.answers.fast_path import compile_scorer, random_students
    from src.components.data_transformation import build_preprocessor
    from src.synthetic import generate_students

    students = generate_students(300, seed=4)
    preprocessor = build_preprocessor().fit(students)
    model = getattr(linear_model, name)().fit(preprocessor.transform(students), students["math_score"])
    scorer = compile_scorer(preprocessor, model, random_students(20))
    assert scorer.kind == "additive", f"{name} is not folded on scikit-learn {sklearn.__version__}"
