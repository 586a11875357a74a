"""A champion is replaced only by a model of the same students: provenance in the manifest, both held-out splits.

With a champion trained on the public data set, a model of the synthetic cohort (``train_pipeline`` without
``--data``, ``mlflow run . -e train``, ``dvc exp run``) or of another population leaves ``champion.json``
byte-identical and says why in one line; a real-data challenger that is better on the champion's own held-out
students is promoted; a person can still promote a model of other students with ``--other-population``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from src.lifecycle.decision import Provenance, check_population, population_refusal, unseen_by
from src.pipeline import promote
from src.pipeline.train_pipeline import main
from src.store import LocalStore
from tests.servers import BIN, PROJECT

QUICK = ["--no-tracking", "--n-jobs", "1", "--cv-folds", "3"]


def train_cli(*args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main([*args, *QUICK], out=out)
    return code, out.getvalue().splitlines()


def champion_bytes(store: Path) -> bytes:
    return (store / "champion.json").read_bytes()


@pytest.fixture()
def real_champion(shared_data, tmp_path, monkeypatch) -> tuple[Path, str]:
    """A store whose champion is a k-NN model of stud.csv (a fair model, beaten by ridge on the same students)."""
    monkeypatch.chdir(tmp_path)  # no data/students.csv here: without --data, training takes the synthetic cohort
    code, lines = train_cli("--data", str(shared_data / "stud.csv"), "--store", "art", "--models", "knn")
    assert code == 0 and lines[-1].startswith("promoted "), lines
    manifest_data = json.loads(next((tmp_path / "art").glob("*/manifest.json")).read_text())["data"]
    assert manifest_data["synthetic"] is False and manifest_data["population"] == "students", manifest_data
    assert len(manifest_data["fingerprint"]) == 64 and manifest_data["source"].endswith("stud.csv")
    return tmp_path / "art", json.loads(champion_bytes(tmp_path / "art"))["model_version"]


@pytest.mark.slow
def test_a_synthetic_model_never_replaces_a_real_champion_unless_a_person_says_so(real_champion, shared_data):
    store, champion = real_champion
    before = champion_bytes(store)

    code, lines = train_cli("--store", str(store), "--models", "ridge")  # no --data: the synthetic cohort
    assert code == 0
    synthetic = next(line.split()[1] for line in lines if line.startswith("version:"))
    assert lines[-1] == (
        f"kept {champion}: candidate {synthetic} was trained on synthetic students, the champion {champion} on real "
        "students of population 'students' (stud.csv): a model of other students replaces it only by hand "
        f"(python -m src.pipeline.promote --version {synthetic} --other-population)"
    )
    assert champion_bytes(store) == before

    out = io.StringIO()
    assert promote.main(["--store", str(store), "--version", synthetic, "--no-tracking"], out=out) == 1
    assert out.getvalue().startswith("promotion failed: candidate ") and "--other-population" in out.getvalue()
    assert champion_bytes(store) == before

    code, lines = train_cli("--data", str(shared_data / "stud.csv"), "--population", "district-9", "--store", str(store))
    assert code == 0 and lines[-1].startswith(f"kept {champion}: candidate ")
    assert "population 'district-9' (stud.csv), the champion" in lines[-1], lines[-1]
    assert champion_bytes(store) == before

    out = io.StringIO()
    args = ["--store", str(store), "--version", synthetic, "--no-tracking", "--other-population"]
    assert promote.main(args, out=out) == 0
    assert out.getvalue() == f"promoted {synthetic}: promoted by hand, a model of other students (synthetic students)\n"
    assert [d["decision"] for d in LocalStore(store).decisions()][-1] == "promoted by hand"


@pytest.mark.slow
def test_a_real_challenger_better_on_the_champions_own_students_is_promoted(real_champion, shared_data):
    store, champion = real_champion
    before = champion_bytes(store)
    stud = str(shared_data / "stud.csv")

    code, lines = train_cli("--data", stud, "--store", str(store), "--models", "ridge", "--seed", "7", "--experiment")
    assert code == 0 and lines[-1].startswith(f"kept {champion}: test R2 "), lines[-1]
    assert "would replace it; an experiment never moves the champion: promote it by hand" in lines[-1]
    assert champion_bytes(store) == before

    code, lines = train_cli("--data", stud, "--store", str(store), "--models", "ridge")
    challenger = next(line.split()[1] for line in lines if line.startswith("version:"))
    assert code == 0 and lines[-1].startswith(f"promoted {challenger}: test R2 0.88"), lines[-1]
    # the same seed: the champion's 200 held-out students are the challenger's, none of them trained on
    assert "on the candidate's 200 held-out students" in lines[-1] and "on the champion's 200 (students neither" in lines[-1]
    assert json.loads(champion_bytes(store))["model_version"] == challenger

    code, lines = train_cli("--data", stud, "--store", str(store), "--models", "knn", "--seed", "7")
    assert code == 0 and lines[-1].startswith(f"kept {challenger}: ") and "does not replace it" in lines[-1], lines[-1]
    ours, theirs = lines[-1].split("on the candidate's ")[1].split()[0], lines[-1].split("on the champion's ")[1].split()[0]
    assert 20 < int(ours) < 200 and 20 < int(theirs) < 200, lines[-1]  # only students neither model trained on


def test_provenance_rules():
    real = Provenance("data/students.csv", "ab" * 32, False, "students")
    other = Provenance("s3://b/district-9.csv?versionId=1", "cd" * 32, False, "district-9")
    synthetic = Provenance.of({"data": {"source": "synthetic", "fingerprint": "ef" * 32}})  # a set made before the field
    assert synthetic.synthetic and synthetic.population == "synthetic"
    assert population_refusal(synthetic, real, "V", "C").startswith("candidate V was trained on synthetic students")
    assert "real students of population 'district-9' (district-9.csv)" in population_refusal(other, real, "V", "C")
    assert population_refusal(real, synthetic, "V", "C") is None  # real students take a synthetic champion's place
    assert population_refusal(real, real, "V", "C") is None
    assert check_population("", synthetic=False) == "students" and check_population("", synthetic=True) == "synthetic"
    for bad in ("synthetic", "District 9", "../x"):
        with pytest.raises(ValueError, match="population"):
            check_population(bad, synthetic=False)
    test = pd.DataFrame({"gender": ["female", "male", "male"], "math_score": [50, 60, 70]})
    assert unseen_by(test, test.iloc[[1]])["math_score"].tolist() == [50, 70]


def test_population_is_checked_before_training(tmp_path):
    code, lines = train_cli("--store", str(tmp_path / "art"), "--population", "district-9")
    assert code == 1 and lines == [
        "training failed: population: the synthetic cohort is always 'synthetic', not 'district-9'"
    ]


def clean_env(**extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))},
        "PATH": f"{BIN}:/usr/bin:/bin",
        **extra,
    }


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_mlflow_run_of_the_synthetic_default_leaves_a_real_champion_alone(real_champion, tmp_path):
    store, champion = real_champion
    before = champion_bytes(store)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [str(BIN / "mlflow"), "run", ".", "-e", "train", "--env-manager", "local", "-P", f"store={store}"]
    result = subprocess.run(
        [*args, "-P", "models=ridge"],
        cwd=PROJECT,
        env=clean_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=1100,  # a busy 2-core machine: the run itself takes about 40 s of CPU
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"kept {champion}: candidate ") and "was trained on synthetic students" in last, last
    assert champion_bytes(store) == before
    import mlflow

    version = mlflow.MlflowClient(tracking_uri=uri).get_model_version("student-math-score", "1")
    assert version.tags["role"] == "challenger" and "synthetic students" in version.tags["decision"]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_dvc_exp_run_leaves_the_champion_alone(shared_data, tmp_path):
    from tests.test_dvc import project_files

    dvc = BIN / "dvc"
    if not dvc.exists():
        pytest.skip(f"dvc is not installed in {BIN} (requirements-dvc.txt; scripts/test.sh installs it)")
    repo = tmp_path / "repo"
    for name in project_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, repo / name)
    (repo / "data").mkdir(exist_ok=True)
    shutil.copy2(shared_data / "stud.csv", repo / "data" / "students.csv")
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("models: null", "models: [ridge]").replace("cv_folds: 5", "cv_folds: 3"))
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(
        HOME=str(home),
        LANG="C.UTF-8",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.org",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.org",
    )

    def run(*args: str) -> str:
        result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    run("git", "init", "-q", "-b", "main")
    run(str(dvc), "add", "data/students.csv")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "project with its data under DVC")
    trained = run(str(BIN / "python"), "-m", "src.pipeline.train_pipeline", "--data", "data/students.csv", *QUICK)
    champion = json.loads(champion_bytes(repo / "artifacts"))["model_version"]
    assert trained.splitlines()[-1].startswith(f"promoted {champion}")
    before = champion_bytes(repo / "artifacts")

    output = run(str(dvc), "exp", "run", "-S", "train.seed=7")
    kept = [line for line in output.splitlines() if line.startswith("kept ")]
    assert kept and kept[0].startswith(f"kept {champion}: ") and "an experiment never moves the champion" in kept[0], output
    assert champion_bytes(repo / "artifacts") == before
