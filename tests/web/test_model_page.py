"""/model and /model.json: the loaded model, its metrics, groups, plots, drift, history and card."""

import pytest

from src.config import AppConfig
from src.lifecycle.model_card import champion_history, source_name
from src.schema import CATEGORICAL_FEATURES


def test_model_json_describes_the_loaded_set(client, trained):
    body = client.get("/model.json")
    assert body.status_code == 200
    card = body.get_json()
    manifest = trained.manifest
    assert card["model_version"] == manifest["model_version"] and card["model"] == manifest["model"]
    assert card["data"]["fingerprint"] == manifest["data"]["fingerprint"]
    assert card["data"]["rows_valid"] == manifest["data"]["rows_valid"]
    assert card["metrics"]["test"] == manifest["metrics"]["test"] and card["metrics"]["cv"] == manifest["metrics"]["cv"]
    assert card["groups"] == manifest["groups"]
    assert card["plots"] == ["predicted_vs_actual.png", "error_by_group.png"]
    assert card["drift"]["available"] is True and card["drift"]["drift_detected"] is False
    assert [(h["version"], h["decision"]) for h in card["history"]] == [(manifest["model_version"], "promoted")]
    assert "never for grading" in card["card"]["intended_use"].lower()
    assert any("correlations, not causes" in item for item in card["card"]["limitations"])


def test_model_page_shows_version_metrics_groups_and_card(client, trained):
    page = client.get("/model")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    manifest = trained.manifest
    assert manifest["model_version"] in html and f"{manifest['metrics']['test']['r2']:.3f}" in html
    for feature in CATEGORICAL_FEATURES:
        for category in feature.categories:
            assert f'data-feature="{feature.name}" data-group="{category}"' in html.replace("&#39;", "'")
    assert 'src="/model/plots/predicted_vs_actual.png"' in html and 'src="/model/plots/error_by_group.png"' in html
    assert "Use it for:" in html and "Limitations" in html


def test_the_model_page_speaks_to_its_readers_first_in_plain_words_and_percentages(client, trained):
    html = client.get("/model").get_data(as_text=True)
    manifest = trained.manifest
    first = html.index('id="in-short"')
    assert first < html.index('id="groups"') < html.index('id="data-team"') < html.index("R²")
    summary = html[first : html.index("</section>", first)]
    for words in (
        "What it predicts",
        "How far off it is",
        "How often the range holds",
        "For whom it is worse",
        "How trustworthy the chance is",
    ):
        assert words in summary
    coverage = manifest["metrics"]["test"]["interval_coverage"]
    assert f'<span id="test-coverage">{coverage * 100:.0f}&nbsp;%</span>' in summary
    assert f"{manifest['metrics']['test']['mae']:.0f}</span> points on average" in summary
    for jargon in ("R²", "RMSE", "PSI", "fingerprint"):
        assert jargon not in summary
    below = manifest["metrics"]["below_cut"]
    assert f'id="below-cut-brier">{below["model"]["brier"]:.3f}<' in html
    assert f'id="baseline-brier">{below["baseline"]["brier"]:.3f}<' in html
    assert 'id="evidence-and-association"' in html and "not an effect" in html
    assert "the table below" not in html and "named below" not in html


def test_the_training_data_is_shown_by_name_without_its_server_path(store_dir, tmp_path):
    import json

    from app import create_app

    manifest = json.loads(
        (store_dir / json.loads((store_dir / "champion.json").read_text())["model_version"] / "manifest.json").read_text()
    )
    assert manifest["data"]["source"] == "synthetic"
    client = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "d")).test_client()
    assert client.get("/model.json").get_json()["data"]["source"] == "synthetic students (made up, not real)"


def test_plots_are_served_as_png_and_only_those_the_manifest_lists(client, trained):
    plot = client.get("/model/plots/error_by_group.png")
    assert plot.status_code == 200 and plot.mimetype == "image/png"
    assert plot.data == (trained.manifest_path.parent / "error_by_group.png").read_bytes()
    for name in ("model.pkl", "metrics.json", "../manifest.json", "other.png"):
        assert client.get(f"/model/plots/{name}").status_code == 404


def test_landing_page_and_form_link_to_the_model_page(client):
    assert 'href="/model"' in client.get("/").get_data(as_text=True)
    assert 'href="/model"' in client.get("/predictdata").get_data(as_text=True)


def test_without_a_model_the_page_says_so(tmp_path):
    from app import create_app

    client = create_app(AppConfig(artifacts_dir=tmp_path / "none", drift_dir=tmp_path / "d")).test_client()
    assert client.get("/model").status_code == 503 and "No model is loaded" in client.get("/model").get_data(as_text=True)
    assert client.get("/model.json").get_json()["error"] == "model_unavailable"
    assert client.get("/model/plots/error_by_group.png").status_code == 503


def test_history_shows_the_store_decisions(store_copy, tmp_path):
    from app import create_app
    from src.store import LocalStore

    store = LocalStore(store_copy)
    first = store.champion().model_version
    store.write_decision(
        {
            "version": first,
            "decision": "kept",
            "reason": "worst group race_ethnicity=group C: MAE 9.1",
            "at": "2026-11-02T10:00:00+00:00",
        }
    )
    store.write_decision({"version": first, "decision": "deleted-everything", "reason": "not a decision"})
    client = create_app(AppConfig(artifacts_dir=store_copy, drift_dir=tmp_path / "d")).test_client()
    history = client.get("/model.json").get_json()["history"]
    assert [h["decision"] for h in history] == ["promoted", "kept"]
    assert history[0]["version"] == first and "first model in the store" in history[0]["reason"]
    assert "worst group race_ethnicity=group C" in client.get("/model").get_data(as_text=True)


@pytest.mark.parametrize("records", [[], [1, 2], [{"version": "v1"}], [{"decision": "nope"}]])
def test_history_leaves_out_what_is_not_a_decision(records):
    assert champion_history(records) == []


def test_the_training_data_is_named_without_any_path_host_or_credentials():
    assert source_name("https://user:secret@example.org/exports/data.csv?token=abc") == "data.csv"
    assert source_name("s3://bucket/district/students.csv") == "students.csv"
    assert source_name("/srv/school/private/stud.csv") == "stud.csv"
    assert source_name("synthetic") == "synthetic students (made up, not real)"


def test_group_gauges_use_only_the_schema_categories(client, trained):
    text = client.get("/metrics").get_data(as_text=True)
    lines = [line for line in text.splitlines() if line.startswith(("model_group_mae{", "model_group_coverage{"))]
    expected = sum(len(f.categories) for f in CATEGORICAL_FEATURES)
    assert len(lines) == 2 * expected
    row = trained.manifest["groups"]["lunch"]["standard"]
    assert f'model_group_mae{{feature="lunch",group="standard"}} {row["mae"]}' in text
    assert f'model_group_coverage{{feature="lunch",group="standard"}} {row["coverage"]}' in text
