import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from src.monitoring.drift import WINDOW_COLUMNS, build_reference, drift_report, encode_rows, psi
from src.monitoring.window import SharedWindow
from src.synthetic import generate_students


@pytest.fixture(scope="module")
def profile():
    train = generate_students(800, seed=1)
    return build_reference(train, train["math_score"].to_numpy(dtype=float))


def window_of(students):
    records = students.drop(columns="math_score").to_dict("records")
    return encode_rows(records, students["math_score"].to_numpy(dtype=float))


def test_psi_is_zero_for_identical_shares_and_grows_with_shift():
    expected = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(expected, np.array([25, 25, 25, 25])) == pytest.approx(0.0, abs=1e-12)
    assert psi(expected, np.array([10, 20, 30, 40])) < psi(expected, np.array([0, 0, 10, 90]))


def test_same_population_does_not_drift(profile):
    report = drift_report(profile, window_of(generate_students(500, seed=2)), threshold=0.2, min_samples=200)
    assert report["enough_data"] and not report["drift_detected"]
    assert max(report["features"].values()) < 0.1 and report["prediction"] < 0.1


def test_low_reading_and_writing_scores_drift(profile):
    students = generate_students(300, seed=3)
    students["reading_score"] = 3
    students["writing_score"] = 4
    report = drift_report(profile, window_of(students), threshold=0.2, min_samples=200)
    assert report["drift_detected"]
    assert {"reading_score", "writing_score"} <= set(report["drifted_features"])


def test_small_window_never_reports_drift(profile):
    students = generate_students(50, seed=4)
    students["reading_score"] = 3
    report = drift_report(profile, window_of(students), threshold=0.2, min_samples=200)
    assert report["features"]["reading_score"] > 0.2
    assert not report["enough_data"] and not report["drift_detected"]


def test_window_keeps_only_the_latest_rows(tmp_path):
    window = SharedWindow(tmp_path, capacity=10, columns=2)
    window.append(np.arange(30, dtype=float).reshape(15, 2))
    held = window.snapshot()
    assert len(held) == 10 and window.total == 15
    assert sorted(held[:, 0].tolist()) == list(range(10, 30, 2))


def _append_from_child(directory, start):
    window = SharedWindow(directory, capacity=1000, columns=len(WINDOW_COLUMNS))
    for i in range(100):
        window.append(np.full((1, len(WINDOW_COLUMNS)), float(start + i)))


def test_window_is_shared_by_processes(tmp_path):
    SharedWindow(tmp_path, capacity=1000, columns=len(WINDOW_COLUMNS))
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_append_from_child, args=(tmp_path, k * 1000)) for k in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    held = SharedWindow(tmp_path, capacity=1000, columns=len(WINDOW_COLUMNS)).snapshot()
    assert len(held) == 300 and len(set(held[:, 0].tolist())) == 300


def test_a_resized_window_is_a_new_file_and_a_process_mapping_the_old_one_keeps_working(tmp_path):
    import subprocess
    import sys
    import textwrap

    # A process maps a large window and keeps using it while another resizes the file to a small one. Were
    # the file truncated in place, the first process would die of SIGBUS on its next write.
    script = textwrap.dedent(f"""
        import subprocess, sys, numpy as np
        from pathlib import Path
        from src.monitoring.window import SharedWindow
        big = SharedWindow(Path({str(tmp_path)!r}), capacity=5000, columns=3)
        inode = big.path.stat().st_ino
        subprocess.run([sys.executable, "-c", "from pathlib import Path; from src.monitoring.window import "
                        "SharedWindow; SharedWindow(Path({str(tmp_path)!r}), capacity=10, columns=3)"], check=True)
        assert big.path.stat().st_ino != inode, "resized in place"
        big.append(np.ones((5000, 3)))
        assert big.snapshot().shape == (5000, 3)
        print("alive")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 0 and "alive" in result.stdout, (result.returncode, result.stderr[-2000:])
    small = SharedWindow(tmp_path, capacity=10, columns=3)
    assert small.total == 0 and small.path.stat().st_size == (4 + 10 * 3) * 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift-window.bin", "drift-window.lock"]
