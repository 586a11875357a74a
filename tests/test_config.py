import re

import pytest

from src.config import AppConfig, ConfigError


def test_metrics_token_is_read_and_kept_out_of_the_repr():
    config = AppConfig.from_env({"METRICS_TOKEN": "s3cret-scrape-token-42"})
    assert config.metrics_token == "s3cret-scrape-token-42"
    assert "s3cret" not in repr(config)
    assert AppConfig.from_env({}).metrics_token is None
    assert AppConfig.from_env({"METRICS_TOKEN": ""}).metrics_token is None


@pytest.mark.parametrize("token", ["short", " padded-token-with-spaces "])
def test_a_weak_or_padded_metrics_token_is_refused_naming_the_variable(token):
    with pytest.raises(ConfigError, match="METRICS_TOKEN must be at least 16 characters"):
        AppConfig.from_env({"METRICS_TOKEN": token})


def test_malformed_numbers_name_their_variable():
    with pytest.raises(ConfigError, match="MAX_BATCH must be a whole number"):
        AppConfig.from_env({"MAX_BATCH": "ten"})
    with pytest.raises(ConfigError, match="DRIFT_THRESHOLD must be positive"):
        AppConfig.from_env({"DRIFT_THRESHOLD": "0"})


def test_support_cut_is_read_from_the_environment():
    assert AppConfig.from_env({}).support_cut == 50.0
    assert AppConfig.from_env({"SUPPORT_CUT": "40"}).support_cut == 40.0
    assert AppConfig.from_env({"SUPPORT_CUT": "100"}).support_cut == 100.0


@pytest.mark.parametrize("raw", ["0", "-5", "100.5", "fifty", "nan", "inf"])
def test_a_support_cut_outside_the_score_range_is_refused_naming_the_variable(raw):
    with pytest.raises(ConfigError, match="SUPPORT_CUT must"):
        AppConfig.from_env({"SUPPORT_CUT": raw})


def test_api_token_digests_are_read_as_bytes_in_either_case_and_kept_out_of_the_repr():
    first, second = "ab" * 32, "0F" * 32
    config = AppConfig.from_env({"API_TOKEN_SHA256": f"{first}, {second}"})
    assert config.api_token_sha256 == (bytes.fromhex(first), bytes.fromhex(second))
    assert "abab" not in repr(config)
    assert AppConfig.from_env({}).api_token_sha256 == ()
    assert AppConfig.from_env({"API_TOKEN_SHA256": " "}).api_token_sha256 == ()


@pytest.mark.parametrize(
    "raw, entry",
    [
        ("abc", 1),  # too short
        ("ab" * 32 + ",", 2),  # an empty entry
        ("ab" * 32 + "," + "zz" * 32, 2),  # not hex
        ("my-clear-text-token-1234567890", 1),  # the token itself instead of its digest
    ],
)
def test_a_malformed_api_token_digest_is_refused_naming_the_variable_and_the_entry(raw, entry):
    with pytest.raises(ConfigError, match=f"API_TOKEN_SHA256 must list the SHA-256 .* entry {entry} is not"):
        AppConfig.from_env({"API_TOKEN_SHA256": raw})


def test_the_same_api_token_digest_twice_is_refused():
    with pytest.raises(ConfigError, match="API_TOKEN_SHA256 lists the same digest twice"):
        AppConfig.from_env({"API_TOKEN_SHA256": f"{'ab' * 32},{'AB' * 32}"})


def test_hsts_max_age_defaults_to_a_year_and_zero_turns_it_off():
    assert AppConfig.from_env({}).hsts_max_age == 31_536_000
    assert AppConfig.from_env({"HSTS_MAX_AGE": "0"}).hsts_max_age == 0
    with pytest.raises(ConfigError, match="HSTS_MAX_AGE must be at least 0"):
        AppConfig.from_env({"HSTS_MAX_AGE": "-1"})


def test_a_school_sets_its_own_next_steps_and_link():
    config = AppConfig.from_env(
        {
            "NEXT_STEP_NEEDS_SUPPORT": "  Book a   meeting with Ms Ortiz (math lead).  ",
            "NEXT_STEP_LINK": "https://school.example/support",
            "NEXT_STEP_LINK_TEXT": "Plan",
        }
    )
    assert config.next_step("needs_support") == "Book a meeting with Ms Ortiz (math lead)."
    assert config.next_step("on_track") == AppConfig().next_step_on_track  # not set: the default
    assert (config.next_step_link, config.next_step_link_text) == ("https://school.example/support", "Plan")
    assert AppConfig.from_env({"NEXT_STEP_LINK": "/intranet/support"}).next_step_link == "/intranet/support"
    assert AppConfig.from_env({}).next_step_link is None


@pytest.mark.parametrize(
    "env, message",
    [
        ({"NEXT_STEP_LINK": "javascript:alert(1)"}, "NEXT_STEP_LINK must be an http(s):// address"),
        ({"NEXT_STEP_LINK": "https://a.example/x y"}, "NEXT_STEP_LINK must be"),
        ({"NEXT_STEP_UNCERTAIN": "x" * 401}, "NEXT_STEP_UNCERTAIN must be at most 400 characters"),
    ],
)
def test_a_next_step_the_page_cannot_show_is_refused_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        AppConfig.from_env(env)
