"""Serving needs only requirements.txt: the app never imports the training-only packages, nor any command."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING_ONLY = {"mlflow", "matplotlib", "fairlearn"}


def test_serving_requirements_exclude_training_packages():
    serving = (ROOT / "requirements.txt").read_text().lower()
    assert not [p for p in TRAINING_ONLY if f"\n{p}==" in serving]
    training = (ROOT / "requirements-train.txt").read_text().lower()
    assert "-r requirements.txt" in training and all(f"\n{p}==" in training for p in TRAINING_ONLY)


def test_the_app_serves_without_importing_training_packages(store_dir, trained, tmp_path):
    code = (
        "import sys, app\n"
        "client = app.app.test_client()\n"
        "student = dict(gender='male', race_ethnicity='group C', parental_level_of_education='high school',"
        " lunch='standard', test_preparation_course='none', reading_score=70, writing_score=68)\n"
        "assert client.post('/predictdata', json=student).status_code == 200\n"
        "assert client.get('/metrics').status_code == 200\n"
        "assert client.get('/model').status_code == 200 and client.get('/model.json').status_code == 200\n"
        "assert client.get('/model/plots/error_by_group.png').status_code == 200\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(TRAINING_ONLY)!r})\n"
        "assert not loaded, loaded\n"
        "commands = sorted(m for m in sys.modules if m.startswith('src.pipeline'))\n"
        "assert not commands, commands  # app.py and the web layer import no command\n"
    )
    env = {"ARTIFACTS_DIR": str(store_dir), "DRIFT_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
