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


@pytest.mark.parametrize("raw, entry", [
    ("abc", 1),                          # too short
    ("ab" * 32 + ",", 2),                # an empty entry
    ("ab" * 32 + "," + "zz" * 32, 2),    # not hex
    ("my-clear-text-token-1234567890", 1),  # the token itself instead of its digest
])
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
