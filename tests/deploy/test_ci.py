"""CI runs every test: .ci/run passes its arguments on and, like CodeBuild, makes a missing tool or data set fail."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

SKIPPING = """
import pytest
from tests.conftest import unavailable

def test_needs_a_tool():
    unavailable("frobnicator not installed")

def test_skips_by_itself():
    pytest.skip("some other reason")

def test_runs():
    assert True
"""


def run_pytest(tmp_path: Path, require_all: str | None) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_skipping.py"
    test_file.write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "REQUIRE_ALL"}
    if require_all is not None:
        env["REQUIRE_ALL"] = require_all
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_missing_tool_skips_locally(tmp_path):
    result = run_pytest(tmp_path, None)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed, 2 skipped" in result.stdout


def test_require_all_turns_a_missing_tool_into_a_failure_and_fails_on_any_skip(tmp_path):
    result = run_pytest(tmp_path, "1")
    assert result.returncode == 1, result.stdout[-2000:]
    assert "REQUIRE_ALL=1 and frobnicator not installed" in result.stdout
    assert "REQUIRE_ALL=1: 1 test(s) skipped; failing the run" in result.stdout


def test_ci_run_sets_require_all_and_runs_the_whole_suite_with_its_arguments(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "test.sh").write_text('echo "args=[$*] REQUIRE_ALL=$REQUIRE_ALL"\n')
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in (
        "prometheus",
        "promtool",
        "prometheus-alertmanager",
        "amtool",
        "wrk",
        "apt-get",
    ):  # present: nothing installed
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
        (fake / tool).chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if k != "REQUIRE_ALL"},
        "PATH": f"{fake}:{os.environ['PATH']}",
        "CHROMIUM": str(fake / "wrk"),
    }
    result = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run"), "-x", "-q", "tests/web"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "args=[--all -x -q tests/web] REQUIRE_ALL=1"  # the whole suite


def test_codebuild_requires_every_test_and_installs_what_they_need():
    spec = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    assert str(spec["env"]["variables"]["REQUIRE_ALL"]) == "1"
    install = "\n".join(spec["phases"]["install"]["commands"])
    for needed in (
        "prometheus",
        "prometheus-alertmanager",
        "wrk",
        "playwright install --with-deps chromium",
        "requirements-dev.txt",
        '"$TEST_DATA_URI" ../shared/data/',
    ):
        assert needed in install, needed
    tests = [c for c in spec["phases"]["pre_build"]["commands"] if "pytest" in c]
    assert len(tests) == 1 and "CHROMIUM=" in tests[0] and "--ignore" not in tests[0] and " -k " not in tests[0]
    argv = shlex.split(tests[0])
    assert argv[argv.index("pytest") + 1 :] == ["-q", "-m", "not docker"]  # only the image test is left out
