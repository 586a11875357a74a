"""The README's commands and scripts/run.sh do what they say."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.servers import PROJECT

README = (PROJECT / "README.md").read_text()


def code_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_commands_run_in_the_venv_without_activating_it():
    modules = [line for line in code_lines() if re.search(r"\bpython3? -m src\.", line)]
    assert modules, "the README shows no training commands"
    bare = [line for line in modules if not line.startswith(".venv/bin/python -m ")]
    assert not bare, f"these need an activated .venv: {bare}"
    for module in sorted({re.search(r"-m (src\.[\w.]+)", line).group(1) for line in modules}):
        result = subprocess.run([str(PROJECT / ".venv" / "bin" / "python"), "-m", module, "--help"], cwd=PROJECT,
                                env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0 and "usage" in result.stdout.lower(), (module, result.stderr[-1000:])


def test_the_readme_422_example_is_what_a_single_student_gets(client, student):
    example = json.loads(re.search(r"`(\{\"field\": \"reading_score\"[^`]*\})`", README).group(1))
    answer = client.post("/predictdata", json={**student, "reading_score": 300}).get_json()
    assert answer["details"] == [example]


def fake_project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A copy of run.sh and the requirements, with stand-ins for python3, .venv's python and gunicorn."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(PROJECT / "scripts" / "run.sh", project / "scripts" / "run.sh")
    for name in ("requirements.txt", "requirements-train.txt"):
        shutil.copy(PROJECT / name, project / name)
    (project / "artifacts").mkdir()
    (project / "artifacts" / "manifest.json").write_text("{}")
    calls = tmp_path / "calls.log"
    bin_dir = project / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in {"python": f'echo "python $*" >> {calls}', "gunicorn":
                       f'echo "gunicorn $* PROMETHEUS_MULTIPROC_DIR=${{PROMETHEUS_MULTIPROC_DIR:-unset}}" >> {calls}'
                       }.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "python3").write_text(f'#!/bin/sh\necho "python3 $*" >> {calls}\n')  # "-m venv" does nothing
    (path_dir / "python3").chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
           "PATH": f"{path_dir}:{os.environ['PATH']}"}
    return project, calls, env


def test_run_sh_installs_with_progress_then_skips_while_the_requirements_are_unchanged(tmp_path):
    project, calls, env = fake_project(tmp_path)
    first = subprocess.run(["bash", "scripts/run.sh"], cwd=project, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert "installing the requirements" in first.stdout
    log = calls.read_text()
    assert "python -m pip install -r requirements-train.txt" in log and "--quiet" not in log
    assert "PROMETHEUS_MULTIPROC_DIR=unset" in log  # gunicorn.conf.py makes (and removes) the folder itself

    calls.write_text("")
    second = subprocess.run(["bash", "scripts/run.sh"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert second.returncode == 0 and "skipping it" in second.stdout
    assert "pip install" not in calls.read_text() and "gunicorn -c gunicorn.conf.py app:app" in calls.read_text()

    with open(project / "requirements.txt", "a") as handle:
        handle.write("# changed\n")
    third = subprocess.run(["bash", "scripts/run.sh"], cwd=project, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert third.returncode == 0 and "installing the requirements" in third.stdout
