"""No private module of a library is imported; the one private use left is checked on the installed version."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import prometheus_client
import pytest
import sklearn
from prometheus_client import CollectorRegistry, Histogram

from src.monitoring.metrics import PROMETHEUS_CLIENT_CHECKED, SCORE_BUCKETS, bulk_observe_supported, observe_many

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_IMPORT = re.compile(r"^\s*(from\s+[\w.]*\._\w+[\w.]*\s+import|import\s+[\w.]*\._\w+)", re.MULTILINE)


def sources() -> list[Path]:
    return [*sorted((ROOT / "src").rglob("*.py")), ROOT / "app.py", ROOT / "gunicorn.conf.py"]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_module_is_imported(path):
    found = PRIVATE_IMPORT.findall(path.read_text())
    assert not found, f"{path.relative_to(ROOT)} imports a private module: {found}"


def test_histogram_internals_are_used_in_one_function_only():
    users = [p.relative_to(ROOT) for p in sources() if re.search(r"\._(buckets|sum|upper_bounds)\b", p.read_text())]
    assert users == [Path("src/monitoring/metrics.py")]


def test_bulk_observation_matches_one_by_one_on_the_installed_prometheus_client():
    installed = prometheus_client.__version__ if hasattr(prometheus_client, "__version__") else _version()
    registry = CollectorRegistry()
    bulk = Histogram("bulk", "", ["k"], buckets=SCORE_BUCKETS, registry=registry).labels("a")
    single = Histogram("single", "", ["k"], buckets=SCORE_BUCKETS, registry=registry).labels("a")
    assert bulk_observe_supported(bulk), (
        f"prometheus_client {installed} no longer has Histogram._upper_bounds/_buckets/_sum, which "
        f"observe_many was checked on with {PROMETHEUS_CLIENT_CHECKED}: batches now fall back to one observe() "
        "per value (slower, still right); adapt observe_many to this version"
    )
    values = np.linspace(-5, 120, 1000)
    observe_many(bulk, values)
    for value in values:
        single.observe(float(value))

    def samples(name: str) -> dict:
        metric = next(m for m in registry.collect() if m.name == name)
        return {
            (s.name.replace(name, ""), s.labels.get("le")): s.value
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    got, expected = samples("bulk"), samples("single")
    assert got.pop(("_sum", None)) == pytest.approx(expected.pop(("_sum", None)))
    assert got == expected, (
        f"observe_many disagrees with observe() on prometheus_client {installed} (checked on {PROMETHEUS_CLIENT_CHECKED})"
    )


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


def _version() -> str:
    from importlib.metadata import version

    return version("prometheus_client")


def test_multiprocess_values_take_a_process_identifier_and_files_keep_the_real_pid(tmp_path):
    """remember_process_id relies on MultiProcessValue(process_identifier=...) and values.ValueClass."""
    import inspect
    import subprocess
    import sys

    from prometheus_client import values

    assert "process_identifier" in inspect.signature(values.MultiProcessValue).parameters
    assert hasattr(values, "ValueClass")
    script = (
        "import os\n"
        "from src.monitoring.metrics import remember_process_id\n"
        "remember_process_id()\n"
        "from prometheus_client import CollectorRegistry, Counter\n"
        "c = Counter('checked', '', registry=CollectorRegistry())\n"
        "c.inc()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    c.inc(); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(os.getpid(), pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    parent, child = out.stdout.split()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"counter_{parent}.db", f"counter_{child}.db"])
