"""The documents stay true: their commands name what exists, every module is on the map, the layers hold.

The shell commands are the fenced ``bash``/``sh``/``shell`` blocks of README.md and docs/*.md. The rules:

- Every module (``-m src.x.y``), script (``bash scripts/x.sh``, ``.venv/bin/python bench/x.py``) and project
  file a command names exists; a path counts as a project file when its first part is a file or folder git
  tracks at the top of the project (``data/students.csv`` is the reader's own file, ``monitoring/...`` ours).
  A glob must match at least one file.
- Python runs as ``.venv/bin/python``: bare ``python``, ``python3`` or ``pip`` is refused, and so is any
  program the project's ``.venv`` provides (``dvc``, ``mlflow``, ``st``, ...) called by its bare name, unless
  an earlier line of the same block activates the ``.venv`` (``source .venv/bin/activate``, needed where a
  tool runs ``python`` from PATH itself). A program given as a path exists, or lives in an environment an
  earlier line of the block creates (``-m venv DIR``).
- A block whose first line is a comment ``# run on ...`` or ``# run in ...`` runs elsewhere (a cluster,
  CodeBuild, a container): its programs are that place's, so only the project files it names are checked.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.servers import PROJECT

DOCS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
VENV_BIN = PROJECT / ".venv" / "bin"
BARE_PYTHON = re.compile(r"(python|pip)(3(\.\d+)?)?")
ELSEWHERE = re.compile(r"#\s*run (on|in) ")
SHELL_LANGUAGES = {"bash", "sh", "shell"}
OPERATORS = {"&&", "||", "|", ";", "&", "(", ")"}
ENTRY_POINTS = {"__init__", "cli", "train_pipeline", "predict_pipeline", "batch_predict", "retrain", "promote", "publish"}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [
        (match.group(1).lower(), match.group(2))
        for match in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    ]


def shell_blocks() -> list[tuple[str, str]]:
    """(document name, block) of every shell block in the documents."""
    return [
        (doc.relative_to(PROJECT).as_posix(), body)
        for doc in DOCS
        for language, body in fenced_blocks(doc.read_text(encoding="utf-8"))
        if language in SHELL_LANGUAGES
    ]


def shell_text(block: str) -> str:
    """The block as one line of shell: comments dropped (a '#' starting a word outside quotes), continued lines
    joined, and every other line end outside quotes made a ';' (a quoted value may span lines)."""
    out: list[str] = []
    quote = None
    escaped = False
    comment = False
    for i, char in enumerate(block):
        if comment:
            if char == "\n":
                comment = False
                out.append(" ; ")
            continue
        if escaped:
            escaped = False
            out.append(" " if char == "\n" else "\\" + char)
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
            out.append(char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "#" and (i == 0 or block[i - 1].isspace()):
            comment = True
        elif char == "\n":
            out.append(" ; ")
        else:
            out.append(char)
    return "".join(out)


def commands(block: str) -> list[list[str]]:
    """The block's commands as word lists, split at the shell's operators and line ends."""
    lexer = shlex.shlex(shell_text(block), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    found: list[list[str]] = [[]]
    for token in lexer:
        if token in OPERATORS:
            found.append([])
        else:
            found[-1].append(token)
    return [words for words in found if words]


def tracked_roots() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True)
    return {line.split("/")[0] for line in listed.stdout.splitlines()} | {"docs"}


TRACKED = tracked_roots()


def project_path(word: str) -> str | None:
    """The project file or folder a word names, if it names one (an option's value, a curl @file too)."""
    value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
    value = value.removeprefix("@").split("#", 1)[0]
    if "://" in value or value.startswith(("-", "/", "$", "~")) or not value:
        return None
    first = value.split("/")[0]
    return value if first in TRACKED and first not in (".", "..") else None


def module_exists(module: str) -> bool:
    base = PROJECT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def block_problems(block: str) -> list[str]:
    lines = [line for line in block.splitlines() if line.strip()]
    elsewhere = bool(lines) and bool(ELSEWHERE.match(lines[0].strip()))
    activated = False
    created_envs: list[str] = []
    problems: list[str] = []
    for words in commands(block):
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words = words[1:]  # VAR=value before the program
        if not words:
            continue
        program, args = words[0], words[1:]
        text = " ".join(words)
        for word in words:
            path = project_path(word)
            if path and path != program and not glob.glob(str(PROJECT / path)):
                problems.append(f"{text!r}: {path} does not exist")
        if program in ("source", ".") and args[:1] == [".venv/bin/activate"]:
            activated = True
            continue
        if elsewhere:
            continue
        if BARE_PYTHON.fullmatch(program):
            problems.append(f"{text!r}: run python as .venv/bin/python, not {program}")
        elif "/" not in program and (VENV_BIN / program).exists() and not activated:
            problems.append(f"{text!r}: {program} comes from the .venv: call .venv/bin/{program}")
        elif (
            "/" in program
            and not (PROJECT / program).exists()
            and not any(program.startswith(env.rstrip("/") + "/") for env in created_envs)
        ):
            problems.append(f"{text!r}: {program} does not exist")
        if "-m" in args:
            module = args[args.index("-m") + 1]
            if module == "venv":
                created_envs.append(args[args.index("-m") + 2])
            elif module.startswith("src.") and not module_exists(module):
                problems.append(f"{text!r}: no module {module}")
        if program in ("bash", "sh") and args and not (PROJECT / args[0]).is_file():
            problems.append(f"{text!r}: no script {args[0]}")
    return problems


def test_the_documents_have_shell_commands_to_check():
    blocks = shell_blocks()
    assert {name for name, _ in blocks} >= {
        "README.md",
        "docs/api.md",
        "docs/data-team.md",
        "docs/operations.md",
        "docs/benchmarks.md",
    }
    assert sum(len(commands(block)) for _, block in blocks) > 40


@pytest.mark.parametrize(("name", "block"), shell_blocks(), ids=lambda value: value if value.endswith(".md") else "")
def test_every_shell_command_names_what_exists_and_runs_in_the_venv(name, block):
    assert block_problems(block) == [], name


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("python -m src.pipeline.train_pipeline", "run python as .venv/bin/python"),
        ("pip install -r requirements-dvc.txt", "run python as .venv/bin/python, not pip"),
        ("dvc repro", "dvc comes from the .venv"),
        (".venv/bin/python -m src.pipeline.no_such_command", "no module src.pipeline.no_such_command"),
        (".venv/bin/python bench/no_such_bench.py", "bench/no_such_bench.py does not exist"),
        ("bash scripts/no_such.sh", "scripts/no_such.sh does not exist"),
        ("curl --data-binary @docs/examples/no_such.csv http://127.0.0.1:8000/", "docs/examples/no_such.csv does not"),
        ("prometheus --config.file=monitoring/no_such.yml", "monitoring/no_such.yml does not exist"),
        ("promtool test rules monitoring/prometheus/tests/*.nothing", "tests/*.nothing does not exist"),
        ("batch-env/bin/pip install x", "batch-env/bin/pip does not exist"),
    ],
)
def test_the_command_rules_refuse_what_they_should(block, expected):
    assert any(expected in problem for problem in block_problems(block)), block_problems(block)


@pytest.mark.parametrize(
    "block",
    [
        "source .venv/bin/activate\ndvc repro   # the stage's python from PATH",
        ".venv/bin/python -m venv batch-env && batch-env/bin/pip install -r requirements-spark.txt",
        "# run on the cluster's primary node\nspark-submit --py-files dist/student_math.zip dist/main.py",
        'curl -s http://127.0.0.1:8000/predictdata -d \'{"a": "bachelor\'"\'"\'s degree"}\'',
        "mkdir -p data && cp /path/to/students.csv data/students.csv",
    ],
)
def test_the_command_rules_allow_what_they_state(block):
    assert block_problems(block) == []


def test_every_command_module_in_the_documents_answers_help():
    modules = sorted(
        {
            word
            for _, block in shell_blocks()
            for words in commands(block)
            for word in words
            if word.startswith("src.") and module_exists(word)
        }
    )
    assert "src.pipeline.train_pipeline" in modules and "src.pipeline.batch_predict" in modules
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    for module in modules:
        result = subprocess.run(
            [str(VENV_BIN / "python"), "-m", module, "--help"],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0 and "usage" in result.stdout.lower(), (module, result.stderr[-1000:])


def test_python_examples_import_what_exists():
    checked = 0
    for doc in DOCS:
        for language, body in fenced_blocks(doc.read_text(encoding="utf-8")):
            if language != "python":
                continue
            for node in ast.walk(ast.parse(body)):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("src"):
                    assert module_exists(node.module), (doc.name, node.module)
                    defined = top_level_names(PROJECT.joinpath(*node.module.split(".")).with_suffix(".py"))
                    missing = {alias.name for alias in node.names} - defined
                    assert not missing, (doc.name, node.module, missing)
                    checked += 1
    assert checked


def top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def anchors(doc: Path) -> set[str]:
    """The anchors of a document's headings, as GitHub makes them (ASCII headings)."""
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return {
        "".join(c for c in heading.strip().lower() if c.isalnum() or c in " -_").replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    }


def test_the_documents_link_only_to_files_and_headings_that_exist():
    links = 0
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", doc.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (doc.parent / target) if target else doc
            assert path.exists(), (doc.name, target)
            if anchor:
                assert anchor in anchors(path), (doc.name, target, anchor)
            links += 1
    assert links > 20


def test_the_readme_is_read_in_five_minutes():
    assert len((PROJECT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


# --- the map: every module named ------------------------------------------------------------------------------


def source_modules() -> dict[str, Path]:
    """Module name -> file, for app.py and every module under src/."""
    found = {"app": PROJECT / "app.py"}
    for path in sorted((PROJECT / "src").rglob("*.py")):
        parts = path.relative_to(PROJECT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_every_module_under_src_is_named_in_the_architecture_document():
    text = (PROJECT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        path.relative_to(PROJECT).as_posix()
        for path in source_modules().values()
        if f"`{path.relative_to(PROJECT).as_posix()}`" not in text
    ]
    assert missing == []


# --- the layers ------------------------------------------------------------------------------------------------
# The import rules are import-linter contracts ([tool.importlinter] in pyproject.toml, `lint-imports` in
# scripts/test.sh); app.py, a module outside the package, is checked by tests/test_serving_footprint.py.


def test_the_architecture_document_says_where_the_import_rules_live():
    text = (PROJECT / "docs" / "architecture.md").read_text(encoding="utf-8")
    config = (PROJECT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[tool.importlinter]" in config and "lint-imports" in (PROJECT / "scripts" / "test.sh").read_text()
    assert "`lint-imports`" in text and "[tool.importlinter]" in text


def test_the_pipeline_folder_holds_the_entry_points_only():
    folder = PROJECT / "src" / "pipeline"
    assert {path.stem for path in folder.glob("*.py")} == ENTRY_POINTS
    assert [path.name for path in folder.iterdir() if path.is_dir() and path.name != "__pycache__"] == []
    for name in ENTRY_POINTS - {"__init__", "predict_pipeline"}:
        text = (folder / f"{name}.py").read_text(encoding="utf-8")
        assert "def main(" in text and re.search(r"raise SystemExit\(_?main\(\)\)\s*$", text), name


# --- the examples ----------------------------------------------------------------------------------------------


def test_the_api_422_example_is_what_a_single_student_gets(client, student):
    text = (PROJECT / "docs" / "api.md").read_text(encoding="utf-8")
    example = json.loads(re.search(r"`(\{\"field\": \"reading_score\"[^`]*\})`", text).group(1))
    answer = client.post("/predictdata", json={**student, "reading_score": 300}).get_json()
    assert answer["details"] == [example]


def readme_answer() -> dict:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    return json.loads(
        next(body for language, body in fenced_blocks(readme) if language == "json" and '"math_score"' in body)
    )


def test_the_factors_example_adds_up_and_is_the_same_in_every_document():
    answer = readme_answer()
    factors = answer["factors"]
    total = factors["baseline"] + sum(factors["contributions"].values())
    assert abs(total - factors["unclipped_score"]) < 1e-6
    assert round(min(max(factors["unclipped_score"], 0.0), 100.0), 1) == answer["math_score"]
    teachers = (PROJECT / "docs" / "teachers.md").read_text(encoding="utf-8")
    example = next(body for language, body in fenced_blocks(teachers) if language == "json")
    assert json.loads("{" + example + "}")["factors"] == factors


def test_the_class_list_example_answers_as_the_readme_shows(client):
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    shown = next(body for language, body in fenced_blocks(readme) if body.startswith("row,student_id,"))
    data = (PROJECT / "docs" / "examples" / "class.csv").read_bytes()
    answer = client.post("/predictdata", data=data, headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    assert answer.status_code == 200
    got = answer.get_data(as_text=True).splitlines()
    expected = shown.splitlines()
    assert len(got) == len(expected) == 5 and got[0] == expected[0]
    bad = [line for line in got if line.startswith("5,S04,")]
    assert bad == [expected[4]]  # the row with two mistakes gets the same words, whatever the model


def readme_student() -> dict:
    """The student of the README's JSON request."""
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    for _, block in (pair for pair in fenced_blocks(readme) if pair[0] in SHELL_LANGUAGES):
        for words in commands(block):
            if "Content-Type: application/json" in words:
                return json.loads(words[words.index("-d") + 1])
    raise AssertionError("the README shows no JSON request")


def test_the_readme_answer_is_what_the_first_model_of_scripts_run_sh_answers(tmp_path):
    """scripts/run.sh trains on the synthetic cohort with the defaults: the README shows that model's answer."""
    from app import create_app
    from src.config import AppConfig
    from src.lifecycle.training import TrainingConfig, train

    train(TrainingConfig(store=tmp_path / "store", data="synthetic", runs_dir=tmp_path / "runs", tracking=False))
    app = create_app(
        AppConfig(artifacts_dir=tmp_path / "store", metrics_enabled=False, drift_enabled=False, model_refresh_seconds=0)
    )
    shown = readme_answer()
    answer = app.test_client().post("/predictdata", json=readme_student()).get_json()
    shown.pop("model_version"), answer.pop("model_version")
    assert answer == shown
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    shown_csv = next(body for language, body in fenced_blocks(readme) if body.startswith("row,student_id,"))
    data = (PROJECT / "docs" / "examples" / "class.csv").read_bytes()
    csv_answer = app.test_client().post(
        "/predictdata", data=data, headers={"Content-Type": "text/csv", "Accept": "text/csv"}
    )
    assert csv_answer.get_data(as_text=True).splitlines() == shown_csv.splitlines()


# --- the configuration table -----------------------------------------------------------------------------------


def variables_read() -> dict[str, str]:
    """Environment variable -> the file that reads it: the app, the commands, gunicorn.conf.py, the scripts."""
    found: dict[str, str] = {}
    python = [
        PROJECT / "app.py",
        PROJECT / "gunicorn.conf.py",
        *sorted((PROJECT / "src").rglob("*.py")),
        *sorted((PROJECT / "scripts").glob("*.py")),
    ]
    for path in python:
        text = path.read_text(encoding="utf-8")
        for pattern in (
            r"os\.environ(?:\.get\(|\[)\s*[\"']([A-Z][A-Z0-9_]+)[\"']",
            r"\benv(?:\.get\(|\[)\s*[\"']([A-Z][A-Z0-9_]+)[\"']",
            r"\(env, [\"']([A-Z][A-Z0-9_]+)[\"']",
        ):
            for name in re.findall(pattern, text):
                found.setdefault(name, path.relative_to(PROJECT).as_posix())
    for path in [*sorted((PROJECT / "scripts").glob("*.sh")), PROJECT / ".ci" / "run"]:
        for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", path.read_text(encoding="utf-8")):
            found.setdefault(name, path.relative_to(PROJECT).as_posix())
    return found


def configuration_table() -> set[str]:
    text = (PROJECT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def test_every_environment_variable_the_code_reads_is_in_the_configuration_table():
    read = variables_read()
    assert {"GUNICORN_ACCESS_LOG", "GUNICORN_TIMEOUT", "SUPPORT_CUT", "MODEL_SIGNING_KEY", "HOST"} <= set(read)
    missing = {name: where for name, where in read.items() if name not in configuration_table()}
    assert missing == {}


def test_every_variable_in_the_configuration_table_is_read_somewhere():
    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True)
    files = [
        PROJECT / name
        for name in listed.stdout.splitlines()
        if not name.endswith(".md") and name != "tests/test_docs.py" and (PROJECT / name).is_file()
    ]
    text = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in files)
    assert [name for name in sorted(configuration_table()) if name not in text] == []
