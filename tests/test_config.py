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
