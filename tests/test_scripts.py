"""scripts/run.sh and scripts/test.sh do what they say, and install only when the requirements or pyproject.toml changed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.servers import PROJECT


def fake_project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A copy of run.sh and the requirements, with stand-ins for python3, .venv's python and gunicorn."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(PROJECT / "scripts" / "run.sh", project / "scripts" / "run.sh")
    for name in ("requirements.txt", "requirements-train.txt", "pyproject.toml"):
        shutil.copy(PROJECT / name, project / name)
    (project / "artifacts").mkdir()
    (project / "artifacts" / "manifest.json").write_text("{}")
    calls = tmp_path / "calls.log"
    bin_dir = project / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in {
        "python": f'echo "python $*" >> {calls}',
        "gunicorn": f'echo "gunicorn $* PROMETHEUS_MULTIPROC_DIR=${{PROMETHEUS_MULTIPROC_DIR:-unset}}" >> {calls}',
    }.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "python3").write_text(f'#!/bin/sh\necho "python3 $*" >> {calls}\n')  # "-m venv" does nothing
    (path_dir / "python3").chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "PATH": f"{path_dir}:{os.environ['PATH']}",
    }
    return project, calls, env


def test_run_sh_installs_with_progress_then_skips_while_the_requirements_are_unchanged(tmp_path):
    project, calls, env = fake_project(tmp_path)
    first = subprocess.run(
        ["bash", "scripts/run.sh"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert first.returncode == 0, first.stderr
    assert "installing the requirements" in first.stdout
    log = calls.read_text()
    assert "python -m pip install -r requirements-train.txt" in log and "--quiet" not in log
    assert "python -m pip install -e . --no-deps" in log  # the project itself, after its requirements
    assert "PROMETHEUS_MULTIPROC_DIR=unset" in log  # gunicorn.conf.py makes (and removes) the folder itself

    calls.write_text("")
    second = subprocess.run(
        ["bash", "scripts/run.sh"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert second.returncode == 0 and "skipping it" in second.stdout
    assert "pip install" not in calls.read_text() and "gunicorn -c gunicorn.conf.py app:app" in calls.read_text()

    with open(project / "requirements.txt", "a") as handle:
        handle.write("# changed\n")
    third = subprocess.run(
        ["bash", "scripts/run.sh"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert third.returncode == 0 and "installing the requirements" in third.stdout

    with open(project / "pyproject.toml", "a") as handle:
        handle.write("# changed\n")
    calls.write_text("")
    fourth = subprocess.run(
        ["bash", "scripts/run.sh"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert fourth.returncode == 0 and "pip install -e . --no-deps" in calls.read_text()


def fresh_clone(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The scripts and requirements files of a fresh clone (no .venv), with python3 on PATH as a stand-in.

    ``python3 -m venv DIR`` makes ``DIR/bin/python``, which logs its arguments and succeeds: pip, ruff and
    pytest are called and logged, never run.
    """
    project = tmp_path / "clone"
    (project / "scripts").mkdir(parents=True)
    for name in ("run.sh", "test.sh"):
        shutil.copy(PROJECT / "scripts" / name, project / "scripts" / name)
    for path in [*PROJECT.glob("requirements*.txt"), PROJECT / "pyproject.toml"]:
        shutil.copy(path, project / path.name)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "python3").write_text(
        "#!/bin/sh\n"
        f'echo "python3 $*" >> {calls}\n'
        'if [ "$1 $2" = "-m venv" ]; then\n'
        '  mkdir -p "$3/bin"\n'
        f'  printf \'#!/bin/sh\\necho "python $*" >> {calls}\\n\' > "$3/bin/python"\n'
        '  chmod +x "$3/bin/python"; cp "$3/bin/python" "$3/bin/gunicorn"\n'
        f'  printf \'#!/bin/sh\\necho "lint-imports $*" >> {calls}\\n\' > "$3/bin/lint-imports"\n'
        '  chmod +x "$3/bin/lint-imports"\n'
        "fi\n"
    )
    (path_dir / "python3").chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV")},
        "PATH": f"{path_dir}:{os.environ['PATH']}",
        "MODEL_URI": "s3://not-used/by-the-stand-in",
    }
    return project, calls, env


def run_script(project: Path, env: dict[str, str], script: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", f"scripts/{script}", *args], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


def test_test_sh_run_twice_in_a_fresh_clone_installs_once(tmp_path):
    project, calls, env = fresh_clone(tmp_path)
    assert not (project / ".venv").exists()

    first = run_script(project, env, "test.sh", "-q", "tests/test_schema.py")
    log = calls.read_text()
    assert "installing the requirements" in first.stdout
    assert "python3 -m venv .venv" in log and "python -m pip install --quiet -r requirements-dev.txt" in log
    assert "python -m pip install --quiet -e . --no-deps" in log
    assert "python -m ruff check ." in log and "python -m ruff format --check ." in log
    assert "lint-imports" in log and "python -m vulture" in log
    assert "python -m pytest -q tests/test_schema.py" in log  # arguments go to pytest as they are

    calls.write_text("")
    second = run_script(project, env, "test.sh")
    log = calls.read_text()
    assert "skipping it" in second.stdout
    assert "pip install" not in log and "venv" not in log
    # no arguments: the fast tier, on every core
    assert "python -m ruff check ." in log
    assert "python -m pytest -m not (slow or server or browser or spark or docker) -n auto" in log

    calls.write_text("")
    run_script(project, env, "test.sh", "--all", "-q")
    counted = subprocess.run(["nproc"], env=env, capture_output=True, text=True, check=True, timeout=10).stdout
    workers = int(counted) + 1  # what nproc counts in the script's environment, and one more
    assert (
        f"python -m pytest -n {workers} --dist loadscope --no-loadscope-reorder -q\n" in calls.read_text()
    )  # the whole suite (.ci/run)


def test_test_sh_installs_again_when_any_requirements_file_it_installs_changes(tmp_path):
    project, calls, env = fresh_clone(tmp_path)
    run_script(project, env, "test.sh")
    installed = set()
    pending = ["requirements-dev.txt"]
    while pending:  # the files requirements-dev.txt includes, directly or through another one
        name = pending.pop()
        installed.add(name)
        pending += [
            line.split()[1]
            for line in (project / name).read_text().splitlines()
            if line.startswith(("-r ", "-c ")) and line.split()[1] not in installed
        ]
    assert installed >= {"requirements.txt", "requirements-train.txt", "requirements-dvc.txt", "requirements-spark.txt"}
    for name in [*sorted(installed), "pyproject.toml"]:
        with open(project / name, "a") as handle:
            handle.write("# changed\n")
        calls.write_text("")
        result = run_script(project, env, "test.sh")
        assert "installing the requirements" in result.stdout, name
        assert "pip install --quiet -r requirements-dev.txt" in calls.read_text(), name
        assert "pip install --quiet -e . --no-deps" in calls.read_text(), name
        assert "skipping it" in run_script(project, env, "test.sh").stdout, name


def test_run_sh_and_test_sh_keep_separate_stamps(tmp_path):
    project, calls, env = fresh_clone(tmp_path)
    run_script(project, env, "run.sh")  # installs the serving and training sets only
    assert (project / ".venv" / ".requirements-stamp").is_file()
    assert not (project / ".venv" / ".requirements-dev-stamp").exists()

    calls.write_text("")
    result = run_script(project, env, "test.sh")  # run.sh's install does not stand for the test tools
    assert "installing the requirements" in result.stdout
    assert "pip install --quiet -r requirements-dev.txt" in calls.read_text()

    calls.write_text("")
    assert "skipping it" in run_script(project, env, "run.sh").stdout  # nor does test.sh's stamp move run.sh's
    assert "skipping it" in run_script(project, env, "test.sh").stdout
    assert "pip install" not in calls.read_text()


def test_test_sh_installs_axe_core_from_its_lock_file_once(tmp_path):
    project, calls, env = fresh_clone(tmp_path)
    axe = project / "tests" / "web" / "axe"
    axe.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(PROJECT / "tests" / "web" / "axe" / name, axe / name)
    npm = Path(env["PATH"].split(":")[0]) / "npm"  # a stand-in: logs, then installs the file the tests inject
    npm.write_text(
        "#!/bin/sh\n"
        f'echo "npm $*" >> {calls}\n'
        'mkdir -p "$3/node_modules/axe-core" && touch "$3/node_modules/axe-core/axe.min.js" '
        '"$3/node_modules/.package-lock.json"\n'
    )
    npm.chmod(0o755)
    run_script(project, env, "test.sh")
    assert "npm ci --prefix tests/web/axe --no-audit --no-fund --loglevel=error" in calls.read_text()
    calls.write_text("")
    run_script(project, env, "test.sh")
    assert "npm" not in calls.read_text()  # installed and its lock file unchanged: not again
