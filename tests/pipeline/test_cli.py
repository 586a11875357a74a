"""``student-math``: the installed console script runs each command of ``src.pipeline`` by its subcommand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from src.pipeline.cli import COMMANDS, main
from tests.servers import BIN, PROJECT

SCRIPT = BIN / "student-math"


def test_the_console_script_is_installed_and_lists_every_subcommand():
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for name, (module, _) in COMMANDS.items():
        assert name in result.stdout and module in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_answers_help_with_its_module_options(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "--store" in capsys.readouterr().out or name == "publish"


def test_an_unknown_subcommand_is_refused_naming_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_the_subcommand_returns_the_command_exit_code(tmp_path):
    assert main(["promote", "--store", str(tmp_path / "empty-store"), "--rollback", "--no-tracking"]) != 0


def test_the_top_level_help_imports_no_command_module():
    code = (
        "import sys\nfrom src.pipeline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('src.pipeline.', 'pandas', 'sklearn')))\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['src.pipeline.cli']"
