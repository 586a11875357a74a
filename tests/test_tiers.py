"""The tiers' table (tests/conftest.py) names tests that exist and marks that pyproject.toml registers."""

from __future__ import annotations

import re

from tests.conftest import LONGEST_FIRST, PROJECT, TIERS, expected_rank, tier_marks


def test_every_key_names_a_module_or_one_of_its_tests():
    for key in (*TIERS, *LONGEST_FIRST):
        path, _, name = key.partition("::")
        assert (PROJECT / path).is_file(), key
        if name:
            text = (PROJECT / path).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", text, re.MULTILINE), key


def test_every_mark_is_registered(pytestconfig):
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert {"slow", "server", "browser", "spark", "docker"} <= registered
    assert {mark for marks in TIERS.values() for mark in marks} <= registered


def test_a_test_gets_its_own_marks_before_its_modules():
    assert tier_marks("tests/test_gunicorn.py::test_gunicorn_serves_predictions_with_the_procfile_command") == (
        "slow",
        "server",
    )
    assert tier_marks("tests/test_gunicorn.py::test_the_settings_listen_where_host_and_port_say[env0-127.0.0.1:8123]") == ()
    assert tier_marks("tests/test_schema.py::test_anything") == ()


def test_the_longest_modules_come_first_then_those_with_slow_tests():
    first, second = LONGEST_FIRST[:2]
    assert expected_rank(first, slow=False) < expected_rank(second, slow=False)
    assert expected_rank(second, slow=False) < expected_rank("tests/test_other.py", slow=True)
    assert expected_rank("tests/test_other.py", slow=True) < expected_rank("tests/test_another.py", slow=False)
