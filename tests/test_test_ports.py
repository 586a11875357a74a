"""No test guesses a free port: servers listen on a socket the test opened (tests/servers.py) or on port 0, the
port they were given read back. The rule, read from the tests' source."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
OPENER = TESTS / "servers.py"  # where the listening sockets are opened


def _sources() -> list[Path]:
    return [p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts]


def _calls(tree: ast.AST, method: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method
    ]


def _ports_given(tree: ast.AST) -> list[tuple[int, object]]:
    """Each ``"--port", value`` pair in a list or tuple literal (a server's command line)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            items = node.elts
            for first, second in zip(items, items[1:], strict=False):
                if isinstance(first, ast.Constant) and first.value == "--port":
                    found.append((first.lineno, second.value if isinstance(second, ast.Constant) else ast.unparse(second)))
    return found


def test_only_the_server_helpers_bind_sockets_and_no_test_probes_a_port():
    offending = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path != OPENER:
            offending += [f"{path.relative_to(TESTS)}:{line} bind" for line in _calls(tree, "bind")]
        offending += [f"{path.relative_to(TESTS)}:{line} connect_ex" for line in _calls(tree, "connect_ex")]
    assert offending == []


def test_every_server_started_with_a_port_is_given_port_0():
    given = {
        f"{path.relative_to(TESTS)}:{line}": value
        for path in _sources()
        for line, value in _ports_given(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert given, "the servers' command lines were not found"
    assert {where: value for where, value in given.items() if value != "0"} == {}


def test_the_rule_finds_a_guessed_port():
    guessed = ast.parse('sock.bind(("127.0.0.1", 0)); sock.close(); start(["mlflow", "server", "--port", str(port)])')
    assert _calls(guessed, "bind") == [1]
    assert _ports_given(guessed) == [(1, "str(port)")]
