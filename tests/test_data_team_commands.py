"""docs/data-team.md's shell commands run, as written, from a project folder set up the way the page says.

Every fenced shell block of the page (``bash``, ``sh``, ``shell``, ``console``) is split into commands by the rules
of tests/test_docs.py (continued lines joined, comments dropped, split at ``&&``, ``;`` and line ends). Each command
is either run by one test below (``RUN``, filled by ``@runs``) or listed in ``NOT_RUN`` with the reason it cannot run
on a test machine; ``test_every_command_of_the_page_is_run_or_listed_with_its_reason`` fails when the page gains a
command that is in neither, or when a listed one has left the page.

As written: the text of a command goes to ``bash`` unchanged, in the order of its block, all the commands a test runs
in one ``bash`` process (so ``source .venv/bin/activate`` holds for the lines after it). The only words replaced are
the page's own placeholders (``PLACEHOLDERS``); ``path/to/students.csv`` needs no replacing, it is made in the folder.
The folder is a copy of the project's files whose ``.venv`` is the environment these tests run in: the install the
page names (``requirements-dev.txt`` includes ``requirements-data-team.txt``, and the project is installed in it in
editable mode, which ``test_the_install_line_finds_the_data_team_set_and_the_project_installed`` checks).

The environment adds only what a test machine needs: S3 addresses reach a moto server (``AWS_ENDPOINT_URL``, which
the page names), pip may not download (``PIP_NO_INDEX``), and each training uses one core (``LOKY_MAX_CPU_COUNT``),
since the tests run side by side on the machine's cores. The data are small synthetic cohorts (``src/synthetic.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from packaging.requirements import Requirement

from src.schema import FEATURE_NAMES
from src.synthetic import generate_students
from tests.conftest import PROJECT, unavailable
from tests.servers import listening_port, start, stop, wait_for
from tests.test_docs import commands, fenced_blocks, shell_text
from tests.test_dvc import project_files

PAGE = PROJECT / "docs" / "data-team.md"
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
VENV = Path(sys.executable).parent.parent  # the environment these tests run in (not resolved: .venv itself)
MARK = "@@@ the command exited with"
DECISION = re.compile(r"^(promoted|kept) (\S+|no champion): (.+)$", re.MULTILINE)
VERSION = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")

# The page's commands, one string each, spaced as ``" ".join(words)`` of tests/test_docs.py's ``commands``.
INSTALL_SET = ".venv/bin/python -m pip install -r requirements-data-team.txt"
INSTALL_PROJECT = ".venv/bin/python -m pip install -e . --no-deps"
TRAIN = ".venv/bin/python -m src.pipeline.train_pipeline"
TRAIN_FILE = ".venv/bin/python -m src.pipeline.train_pipeline --data path/to/students.csv"
TRAIN_URL = ".venv/bin/python -m src.pipeline.train_pipeline --data https://example.org/StudentsPerformance.csv"
TRAIN_S3 = ".venv/bin/python -m src.pipeline.train_pipeline --data s3://bucket/students.csv"
HELP = ".venv/bin/student-math --help"
SHORT_TRAIN = ".venv/bin/student-math train --data path/to/students.csv"
ACTIVATE = "source .venv/bin/activate"
MLFLOW_RUN = "mlflow run . -e train --env-manager local --experiment-name student-math-score -P models=ridge,knn"
TRAIN_STORE = ".venv/bin/python -m src.pipeline.train_pipeline --store artifacts"
PROMOTE = ".venv/bin/python -m src.pipeline.promote --store artifacts --version 20261123T101500Z-1a2b3c4d"
ROLLBACK = ".venv/bin/python -m src.pipeline.promote --store artifacts --rollback"
PUBLISH = ".venv/bin/python -m src.pipeline.publish --artifacts-dir artifacts --to s3://my-models/student-math"
RETRAIN = (
    ".venv/bin/python -m src.pipeline.retrain --store s3://my-models/student-math --data s3://my-data/students.csv "
    "--prometheus-url http://10.0.1.20:9090"
)
TRAIN_EXCLUDED = (
    ".venv/bin/python -m src.pipeline.train_pipeline --data path/to/students.csv --exclude-features gender,race_ethnicity"
)
INSTALL_DVC = ".venv/bin/python -m pip install -r requirements-dvc.txt"
DVC_DATA = (
    "mkdir -p data",
    "cp /path/to/students.csv data/students.csv",
    "dvc add data/students.csv",
    "git add data/students.csv.dvc",
)
DVC_REMOTE = (
    "dvc remote modify storage url s3://my-bucket/dvc",
    "dvc remote modify storage endpointurl https://s3.example.org",
)
DVC_REPRO = "dvc repro"
DVC_PUSH = "dvc push"
DVC_METRICS = "dvc metrics show"
DVC_EXPERIMENT = "dvc exp run -S train.seed=7"
BATCH_FILE = ".venv/bin/python -m src.pipeline.batch_predict --input students.csv --output scored/"
BATCH_S3 = (
    ".venv/bin/python -m src.pipeline.batch_predict --input s3://warehouse/exports/2026/ "
    "--output s3://warehouse/scored/2026/ --format parquet --support-cut 60"
)
BATCH_SPARK = ".venv/bin/python -m src.pipeline.batch_predict --input exports/ --output scored/ --engine spark"
SPARK_BUNDLE = ".venv/bin/python -m src.batch.spark dist/"
BATCH_ENV = ".venv/bin/python -m venv batch-env"
BATCH_ENV_INSTALL = "batch-env/bin/pip install -r requirements-spark.txt venv-pack==0.2.0"
BATCH_ENV_PACK = "batch-env/bin/venv-pack -p batch-env -o dist/batch-env.tar.gz"
SPARK_SUBMIT = (
    "spark-submit --master yarn --deploy-mode client --archives dist/batch-env.tar.gz#environment "
    "--conf spark.pyspark.python=./environment/bin/python --py-files dist/student_math-1.0.0-py3-none-any.zip "
    "dist/batch_predict_main.py --engine spark --input s3://warehouse/exports/2026/ --output s3://warehouse/scored/2026/ "
    "--format parquet --store /home/hadoop/model-set --support-cut 60"
)
SERVE = (
    'PATH="$PWD/.venv/bin:$PATH" .venv/bin/mlflow models serve -m models:/student-math-score@champion '
    "--env-manager local --host 127.0.0.1 --port 5001"
)
PAGE_PORT = "127.0.0.1:5001"  # where the page's server listens; the test's listens where the system put it
INVOKE = (
    "curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d '{\"dataframe_records\": "
    '[{"gender": "female", "race_ethnicity": "group B", "parental_level_of_education": "some college", '
    '"lunch": "standard", "test_preparation_course": "none", "reading_score": 72, "writing_score": 300}]}\''
)

# The page's placeholders, the only words a test replaces (with a file it made, or the version it just trained).
# The page's port too: its server is started on port 0 and the port it was given is read back (none guessed free).
PLACEHOLDERS = {"/path/to/students.csv", "20261123T101500Z-1a2b3c4d", "--port 5001", PAGE_PORT}

# The commands that cannot run on a test machine, each with the reason; everything else on the page runs below.
NOT_RUN: dict[str, str] = {
    INSTALL_PROJECT: "it reinstalls the project into the environment the tests are running from (other tests use its "
    "`student-math` meanwhile) and builds in an isolated environment that pip fills from the package index; "
    "test_the_install_line_finds_the_data_team_set_and_the_project_installed checks the install it makes",
    TRAIN_URL: "it downloads from example.org, the page's example address, and tests download nothing; "
    "tests/components/test_data_ingestion.py::test_reads_an_http_url reads a CSV over HTTP from a local server",
    RETRAIN: "it asks the fleet's Prometheus at 10.0.1.20, an address inside the production network; "
    "tests/monitoring/test_fleet.py runs retrain --prometheus-url against a Prometheus of its own",
    DVC_PUSH: "it pushes to the remote the line before points at, https://s3.example.org, the page's example "
    "address; tests/test_dvc.py pushes to and pulls from a moto S3 server",
    BATCH_ENV_INSTALL: "it downloads PySpark and the serving set from the package index into a new environment, and "
    "tests download nothing",
    BATCH_ENV_PACK: "it packs the environment the line before fills from the package index",
    SPARK_SUBMIT: "it runs on a YARN cluster's primary node (`--master yarn`) and reads s3://warehouse; "
    "bench/batch_predict.py runs the same spark-submit line with --master local[2]",
}

RUN: dict[str, set[str]] = {}  # command -> the tests that run it


def runs(*page_commands: str) -> Callable:
    """Record the page commands a test runs (the test passes them to ``run_as_written``)."""

    def record(test: Callable) -> Callable:
        for command in page_commands:
            RUN.setdefault(command, set()).add(test.__name__)
        return test

    return record


def split_commands(block: str) -> list[str]:
    """The block's commands as the text written (continued lines joined, comments dropped), split where the shell
    runs a new command: ``&&``, ``||``, ``;``, ``|``, ``&`` and line ends outside quotes."""
    text = shell_text(block)
    found: list[str] = []
    current: list[str] = []
    quote = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            quote = None if char == quote else quote
            current.append(char)
        elif char == "\\":
            current.append(text[i : i + 2])
            i += 1
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char in ";&|":
            found.append("".join(current))
            current = []
            if text[i : i + 2] in ("&&", "||"):
                i += 1
        else:
            current.append(char)
        i += 1
    found.append("".join(current))
    return [" ".join(command.split()) for command in found if command.strip()]


@cache
def page_commands() -> tuple[str, ...]:
    """Every command of the page's shell blocks, in page order (a ``console`` block's commands follow ``$ ``)."""
    found: list[str] = []
    for language, body in fenced_blocks(PAGE.read_text(encoding="utf-8")):
        if language not in SHELL_LANGUAGES:
            continue
        if language == "console":
            body = "\n".join(line[2:] for line in body.splitlines() if line.startswith("$ "))
        split = split_commands(body)
        assert [shlex.split(command) for command in split] == commands(body), body  # the same commands as test_docs
        found += split
    return tuple(found)


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a reader's shell on a test machine (no activated environment, no tracking server)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not name.startswith(("MLFLOW_", "AWS_"))
    }
    env.update(
        PIP_NO_INDEX="1",  # a pip line that would download fails instead
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        LOKY_MAX_CPU_COUNT="1",  # one core per training: the tests share the machine's (pytest-xdist)
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.org",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.org",
    )
    env.update(extra)
    return env


def s3_variables(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def run_as_written(
    folder: Path,
    page_command_list: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    replace: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> list[str]:
    """Run the commands in one ``bash`` in ``folder``, in order, each as the page writes it (its placeholders
    replaced); fail, with its output, at the first that exits non-zero. Returns each command's output (with stderr)."""
    replace = dict(replace or {})
    assert set(replace) <= PLACEHOLDERS, set(replace) - PLACEHOLDERS
    lines = ["exec 2>&1"]
    for command in page_command_list:
        assert command in page_commands(), f"{command!r} is not a command of {PAGE.name}"
        text = command
        for placeholder, value in replace.items():
            text = text.replace(placeholder, value)
        lines += [text, f'code=$?; printf "\\n{MARK} %d\\n" "$code"; [ "$code" -eq 0 ] || exit "$code"']
    result = subprocess.run(
        ["bash", "-c", "\n".join(lines)],
        cwd=folder,
        env=dict(env or command_env()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    parts = re.split(rf"\n{MARK} (\d+)\n", result.stdout)
    outputs, codes = parts[0::2], [int(code) for code in parts[1::2]]
    for command, output, code in zip(page_command_list, outputs, codes, strict=False):
        assert code == 0, f"{command!r} exited with {code}:\n{output[-4000:]}"
    assert len(codes) == len(page_command_list), f"bash exited with {result.returncode}:\n{result.stdout[-4000:]}"
    return outputs[: len(codes)]


def uses_its_own_environment() -> None:
    """``source .venv/bin/activate`` must activate the environment it belongs to (a copied virtualenv's script still
    names the folder it was made in)."""
    named = re.search(r"^VIRTUAL_ENV=[\"']?([^\"'\n]+)", (VENV / "bin" / "activate").read_text(), re.MULTILINE)
    if named and Path(named.group(1)).resolve() != VENV.resolve():
        unavailable(
            f"{VENV}/bin/activate activates {named.group(1)}, not its own environment: recreate it (python3 -m venv)"
        )


def decision(output: str) -> tuple[str, str, str]:
    """The command's last line, ``promoted <version>: <why>`` or ``kept <champion>: <why>``."""
    found = DECISION.findall(output)
    assert found and output.rstrip().endswith(f"{found[-1][0]} {found[-1][1]}: {found[-1][2]}"), output[-3000:]
    return found[-1]


def champion(store: Path) -> str:
    return json.loads((store / "champion.json").read_text())["model_version"]


def write_students(path: Path, n: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    generate_students(n, seed=seed).to_csv(path, index=False)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A project folder as the page expects: the project's files, and its ``.venv`` the environment of these tests."""
    root = tmp_path / "project"
    for name in project_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, root / name)
    (root / ".venv").symlink_to(VENV, target_is_directory=True)
    return root


@pytest.fixture()
def moto_bucket(s3_server):
    """Make a bucket on the moto server; returns the S3 client too."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )

    def make(name: str):
        client.create_bucket(Bucket=name)
        return client

    return make


# -- the page's checks ----------------------------------------------------------------------------------------------


def test_every_command_of_the_page_is_run_or_listed_with_its_reason():
    on_page = set(page_commands())
    assert not set(RUN) & set(NOT_RUN), set(RUN) & set(NOT_RUN)
    neither = [command for command in page_commands() if command not in RUN and command not in NOT_RUN]
    assert not neither, f"commands of {PAGE.name} neither run by a test here nor listed in NOT_RUN: {neither}"
    gone = (set(RUN) | set(NOT_RUN)) - on_page
    assert not gone, f"commands no longer on {PAGE.name}: {gone}"
    assert all(reason.strip() for reason in NOT_RUN.values())
    assert len(RUN) > 2 * len(NOT_RUN)  # the page is run, not excused
    tests = {name for name, value in globals().items() if name.startswith("test_") and callable(value)}
    assert set().union(*RUN.values()) <= tests


def test_splitting_keeps_quotes_continuations_and_placeholders_whole():
    block = "a --x 'p q; r' \\\n  --y \"s && t\"   # note\nb && c\n"
    assert split_commands(block) == ["a --x 'p q; r' --y \"s && t\"", "b", "c"]


# -- the install ----------------------------------------------------------------------------------------------------


def requirement_lines(path: Path) -> list[str]:
    """The requirements of a requirements file and of the files it includes (``-r``)."""
    found: list[str] = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("-r "):
            found += requirement_lines(path.parent / line[3:].strip())
        elif line and not line.startswith(("#", "-")):
            found.append(line)
    return found


@runs(INSTALL_SET)
def test_the_install_line_finds_the_data_team_set_and_the_project_installed(folder):
    assert "-r requirements-data-team.txt" in (PROJECT / "requirements-dev.txt").read_text().splitlines()
    unsatisfied = []
    for line in requirement_lines(PROJECT / "requirements-data-team.txt"):
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unsatisfied.append(f"{line} (installed: {installed})")
    assert not unsatisfied, f"the test environment lacks the data team's set: {unsatisfied}"

    (output,) = run_as_written(folder, [INSTALL_SET])
    assert "Requirement already satisfied: mlflow==" in output and "Successfully installed" not in output, output[-3000:]

    # What `pip install -e . --no-deps` makes: the project, editable from this checkout, and its command.
    (distribution,) = metadata.distributions(name="student-math", path=[sysconfig.get_paths()["purelib"]])
    direct = json.loads(distribution.read_text("direct_url.json") or "{}")
    assert direct.get("dir_info", {}).get("editable") is True, direct
    assert Path(direct["url"].removeprefix("file://")).resolve() == PROJECT.resolve()
    assert (VENV / "bin" / "student-math").is_file()


# -- training -------------------------------------------------------------------------------------------------------


@runs(HELP)
def test_the_short_command_lists_every_subcommand(folder):
    (output,) = run_as_written(folder, [HELP])
    listed = re.findall(r"^    (\w+) ", output, re.MULTILINE)
    assert listed == ["train", "batch", "retrain", "promote", "publish"], output


@runs(TRAIN, SERVE, INVOKE)
def test_training_from_the_project_folder_registers_the_champion_that_mlflow_serves(folder):
    write_students(folder / "data" / "students.csv", 150, seed=1)  # "data/students.csv if present"
    (output,) = run_as_written(folder, [TRAIN])
    verb, version, why = decision(output)
    assert (verb, why.startswith("first model in the store")) == ("promoted", True), output[-2000:]
    assert "data:     data/students.csv (150 valid rows, 0 rejected)" in output
    assert champion(folder / "artifacts") == version and (folder / "mlflow.db").is_file()

    log = folder / "serve.log"
    assert SERVE in page_commands() and "--port 5001" in SERVE and PAGE_PORT in INVOKE
    process = start(["bash", "-c", SERVE.replace("--port 5001", "--port 0")], cwd=folder, env=command_env(), log=log)
    try:
        where = f"127.0.0.1:{listening_port(process, timeout=300, log=log)}"
        wait_for(f"http://{where}/ping", process, timeout=300, log=log)
        (answer,) = run_as_written(folder, [INVOKE], replace={PAGE_PORT: where}, timeout=120)
    finally:
        stop(process)
    (prediction,) = json.loads(answer)["predictions"]
    assert prediction["error"] == "writing_score: must be a number between 0 and 100", prediction
    assert prediction["math_score"] is None and prediction["band"] == ""


@runs(TRAIN_FILE, TRAIN_STORE, PROMOTE, ROLLBACK, PUBLISH)
def test_the_lifecycle_commands_train_promote_by_hand_roll_back_and_publish(folder, moto_bucket, s3_server):
    write_students(folder / "path" / "to" / "students.csv", 150, seed=2)
    write_students(folder / "data" / "students.csv", 150, seed=3)
    store = folder / "artifacts"
    (first,) = run_as_written(folder, [TRAIN_FILE])
    verb, first_version, _ = decision(first)
    assert verb == "promoted" and champion(store) == first_version
    (second,) = run_as_written(folder, [TRAIN_STORE])
    verb, named, why = decision(second)
    second_version = VERSION.findall(second.split("version:", 1)[1])[0]
    assert (store / second_version / "manifest.json").is_file()
    assert champion(store) == (second_version if verb == "promoted" else first_version), why

    by_hand = first_version if champion(store) == second_version else second_version
    (promoted,) = run_as_written(folder, [PROMOTE], replace={"20261123T101500Z-1a2b3c4d": by_hand})
    assert decision(promoted)[:2] == ("promoted", by_hand) and champion(store) == by_hand
    (rolled_back,) = run_as_written(folder, [ROLLBACK])
    previous = second_version if by_hand == first_version else first_version
    assert decision(rolled_back)[:2] == ("promoted", previous) and champion(store) == previous

    client = moto_bucket("my-models")
    (published,) = run_as_written(folder, [PUBLISH], env=command_env(**s3_variables(s3_server)))
    verb, version, _ = decision(published)
    assert (verb, version) == ("promoted", previous), published[-2000:]
    pointer = json.loads(client.get_object(Bucket="my-models", Key="student-math/champion.json")["Body"].read())
    assert pointer["model_version"] == previous


@runs(SHORT_TRAIN)
def test_the_short_command_trains_from_a_file(folder):
    write_students(folder / "path" / "to" / "students.csv", 150, seed=4)
    (output,) = run_as_written(folder, [SHORT_TRAIN])
    verb, version, _ = decision(output)
    assert verb == "promoted" and champion(folder / "artifacts") == version
    manifest = json.loads((folder / "artifacts" / version / "manifest.json").read_text())
    assert manifest["data"]["source"] == "path/to/students.csv", manifest["data"]


@runs(TRAIN_EXCLUDED)
def test_training_without_protected_attributes(folder):
    write_students(folder / "path" / "to" / "students.csv", 150, seed=5)
    (output,) = run_as_written(folder, [TRAIN_EXCLUDED])
    verb, version, _ = decision(output)
    assert verb == "promoted"
    manifest = json.loads((folder / "artifacts" / version / "manifest.json").read_text())
    assert set(manifest["excluded_features"]) == {"gender", "race_ethnicity"}
    assert set(manifest["features_used"]) == set(FEATURE_NAMES) - {"gender", "race_ethnicity"}


@runs(TRAIN_S3)
def test_training_from_an_s3_object(folder, moto_bucket, s3_server):
    client = moto_bucket("bucket")
    data = write_students(folder.parent / "students.csv", 150, seed=6)
    client.upload_file(str(data), "bucket", "students.csv")
    (output,) = run_as_written(folder, [TRAIN_S3], env=command_env(**s3_variables(s3_server)))
    verb, version, _ = decision(output)
    assert verb == "promoted" and "data:     s3://bucket/students.csv (150 valid rows, 0 rejected)" in output
    assert champion(folder / "artifacts") == version


@runs(ACTIVATE, MLFLOW_RUN)
def test_mlflow_runs_the_mlproject_in_the_activated_environment(folder):
    uses_its_own_environment()
    output = run_as_written(folder, [ACTIVATE, MLFLOW_RUN])[1]
    training, succeeded = output.rstrip().rsplit("\n", 1)  # MLflow's last line follows the training's
    assert re.search(r"=== Run \(ID '[0-9a-f]+'\) succeeded ===$", succeeded), output[-3000:]
    verb, _, why = decision(training)
    assert verb == "kept" and "an experiment never moves the champion" in why, output[-3000:]
    assert "data:     synthetic (1000 valid rows, 0 rejected)" in training  # MLproject's default data
    assert not (folder / "artifacts" / "champion.json").exists()  # an experiment: the pointer never moved


# -- DVC ------------------------------------------------------------------------------------------------------------


@runs(INSTALL_DVC, *DVC_DATA, *DVC_REMOTE, DVC_REPRO, DVC_METRICS, DVC_EXPERIMENT)
def test_the_dvc_block_tracks_the_data_reproduces_training_and_runs_an_experiment(folder):
    uses_its_own_environment()
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "project"]):
        subprocess.run(command, cwd=folder, env=command_env(), check=True, capture_output=True, timeout=60)
    data = write_students(folder.parent / "students.csv", 150, seed=7)
    block = [INSTALL_DVC, ACTIVATE, *DVC_DATA, *DVC_REMOTE, DVC_REPRO, DVC_METRICS, DVC_EXPERIMENT]
    outputs = dict(zip(block, run_as_written(folder, block, replace={"/path/to/students.csv": str(data)}), strict=True))
    assert "Requirement already satisfied: dvc==" in outputs[INSTALL_DVC]
    assert "Successfully installed" not in outputs[INSTALL_DVC]
    assert (folder / "data" / "students.csv.dvc").is_file()
    ignored = subprocess.run(["git", "check-ignore", "data/students.csv"], cwd=folder, capture_output=True, timeout=60)
    assert ignored.returncode == 0  # DVC keeps the data out of git, the pointer in
    config = (folder / ".dvc" / "config").read_text()
    assert "url = s3://my-bucket/dvc" in config and "endpointurl = https://s3.example.org" in config
    lock = (folder / "dvc.lock").read_text()
    assert "data/students.csv" in lock and "reports/model" in lock
    assert "reports/metrics.json" in outputs[DVC_METRICS] and "test.r2" in outputs[DVC_METRICS], outputs[DVC_METRICS]
    assert "Ran experiment(s)" in outputs[DVC_EXPERIMENT], outputs[DVC_EXPERIMENT][-3000:]
    manifest = json.loads((folder / "reports" / "model" / "manifest.json").read_text())
    assert manifest["data"]["seed"] == 7 and manifest["data"]["source"] == "data/students.csv"  # the experiment's


# -- batch scoring --------------------------------------------------------------------------------------------------


def cohort_file(path: Path, n: int, seed: int) -> pd.DataFrame:
    students = generate_students(n, seed=seed).drop(columns="math_score")
    students.insert(0, "student_id", [f"s{i}" for i in range(n)])
    path.parent.mkdir(parents=True, exist_ok=True)
    students.to_csv(path, index=False)
    return students


ANSWER_COLUMNS = ["student_id", "source", "row", "math_score", "interval_low", "interval_high", "band", "model_version"]


@runs(BATCH_FILE)
def test_batch_scoring_of_a_file_with_the_store_in_the_folder(folder, store_dir):
    shutil.copytree(store_dir, folder / "artifacts", ignore=shutil.ignore_patterns("training-runs"))
    students = cohort_file(folder / "students.csv", 120, seed=8)
    run_as_written(folder, [BATCH_FILE])
    scored = pd.concat(pd.read_csv(part) for part in sorted((folder / "scored" / "predictions").glob("part-*.csv")))
    assert set(ANSWER_COLUMNS) <= set(scored.columns), scored.columns
    assert scored["student_id"].tolist() == students["student_id"].tolist()
    assert scored["model_version"].eq(champion(folder / "artifacts")).all()
    summary = json.loads((folder / "scored" / "summary.json").read_text())
    assert summary["predictions"] == 120 and summary["rejects"] == 0


@runs(BATCH_S3)
def test_batch_scoring_of_an_s3_prefix_to_parquet(folder, store_dir, moto_bucket, s3_server, tmp_path):
    shutil.copytree(store_dir, folder / "artifacts", ignore=shutil.ignore_patterns("training-runs"))
    client = moto_bucket("warehouse")
    for name, seed in (("a.csv", 9), ("b.csv", 10)):
        cohort_file(tmp_path / name, 60, seed=seed)
        client.upload_file(str(tmp_path / name), "warehouse", f"exports/2026/{name}")
    run_as_written(folder, [BATCH_S3], env=command_env(**s3_variables(s3_server)))
    keys = [item["Key"] for item in client.list_objects_v2(Bucket="warehouse", Prefix="scored/2026/")["Contents"]]
    parts = [key for key in keys if key.startswith("scored/2026/predictions/") and key.endswith(".parquet")]
    assert parts and "scored/2026/summary.json" in keys, keys
    local = tmp_path / "part.parquet"
    frames = []
    for key in parts:
        client.download_file("warehouse", key, str(local))
        frames.append(pd.read_parquet(local))
    scored = pd.concat(frames)
    assert set(ANSWER_COLUMNS) <= set(scored.columns) and len(scored) == 120
    assert scored["source"].str.startswith("s3://warehouse/exports/2026/").all()
    summary = json.loads(client.get_object(Bucket="warehouse", Key="scored/2026/summary.json")["Body"].read())
    assert summary["predictions"] == 120


@runs(BATCH_SPARK)
def test_batch_scoring_on_spark_of_a_folder(folder, store_dir):
    shutil.copytree(store_dir, folder / "artifacts", ignore=shutil.ignore_patterns("training-runs"))
    cohort_file(folder / "exports" / "a.csv", 50, seed=11)
    cohort_file(folder / "exports" / "b.csv", 50, seed=12)
    run_as_written(folder, [BATCH_SPARK])
    scored = pd.concat(pd.read_csv(part) for part in sorted((folder / "scored" / "predictions").glob("part-*.csv")))
    assert set(ANSWER_COLUMNS) <= set(scored.columns) and len(scored) == 100
    assert json.loads((folder / "scored" / "summary.json").read_text())["predictions"] == 100


@runs(SPARK_BUNDLE, BATCH_ENV)
def test_the_cluster_bundle_is_written_and_the_batch_environment_made(folder):
    run_as_written(folder, [SPARK_BUNDLE, BATCH_ENV])
    bundle = folder / "dist" / "student_math-1.0.0-py3-none-any.zip"
    with zipfile.ZipFile(bundle) as archive:
        assert "src/pipeline/batch_predict.py" in archive.namelist()
    assert "from src.pipeline.batch_predict import main" in (folder / "dist" / "batch_predict_main.py").read_text()
    assert (folder / "batch-env" / "bin" / "pip").is_file()  # what the next line, which downloads, calls
