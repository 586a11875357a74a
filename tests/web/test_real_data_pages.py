"""The teachers' pages on a model of the public data, asked about its own held-out (test split) students."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest

from src.config import AppConfig
from src.lifecycle.training import TrainingConfig, train
from src.schema import FEATURE_NAMES, TARGET
from tests.conftest import FAST_MODELS


@pytest.fixture(scope="module")
def public_model(shared_data, tmp_path_factory):
    """A model trained on the public data (fast candidates), and its held-out students."""
    store = tmp_path_factory.mktemp("public")
    result = train(
        TrainingConfig(
            store=store, data=str(shared_data / "stud.csv"), cv_folds=3, candidates=FAST_MODELS, tracking=False, n_jobs=1
        )
    )
    return store, result.ingestion.test


@pytest.fixture()
def public_client(public_model, tmp_path):
    from app import create_app

    return create_app(AppConfig(artifacts_dir=public_model[0], drift_dir=tmp_path / "drift")).test_client()


def class_file(test, with_real=True):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student_id", *FEATURE_NAMES, *([TARGET.name] if with_real else [])])
    for i, row in enumerate(test.to_dict("records")):
        writer.writerow([f"T{i}", *(row[n] for n in FEATURE_NAMES), *([row[TARGET.name]] if with_real else [])])
    return out.getvalue().encode()


def table_rows(page):
    """Each row of the class table: its cells' text by data-label."""
    rows = []
    for body in re.findall(r"<tr data-row=.*?</tr>", page, flags=re.S):
        cells = dict(re.findall(r'<td[^>]*data-label="([^"]+)"[^>]*>(.*?)</td>', body, flags=re.S))
        rows.append({k: html.unescape(re.sub(r"<[^>]+>", "", v)).strip() for k, v in cells.items()})
    return rows


def test_no_outside_range_verdict_contradicts_the_printed_range(public_model, public_client):
    _, test = public_model
    data = class_file(test)
    page = public_client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(data), "test.csv"), "upload": "class_list"},
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    rows = table_rows(page)
    assert len(rows) == len(test) == 200
    outside = decimals = 0
    for row in rows:
        low, high = map(float, re.search(r"\(([\d.]+)–([\d.]+)\)", row["Predicted"]).groups())
        real = float(re.match(r"[\d.]+", row["Real score"]).group())
        verdict_inside = "(in range)" in row["Real score"]
        assert verdict_inside == (low <= real <= high), row  # the verdict is the printed range's
        outside += not verdict_inside
        decimals += "." in row["Predicted"]
    assert outside > 0 and decimals > 0  # ranges printed to one decimal where the verdict depends on it
    # the same verdicts in JSON and in the CSV download
    body = public_client.post("/predictdata", data=data, headers={"Content-Type": "text/csv"}).get_json()
    table = list(
        csv.DictReader(
            io.StringIO(
                public_client.post(
                    "/predictdata", data=data, headers={"Content-Type": "text/csv", "Accept": "text/csv"}
                ).get_data(as_text=True)
            )
        )
    )
    for item, line in zip(body["predictions"], table, strict=True):
        interval = item["interval"]
        assert item["inside_range"] == (interval["low"] <= item["real_math_score"] <= interval["high"])
        assert line["inside_range"] == ("yes" if item["inside_range"] else "no")
        assert float(line["interval_low"]) == interval["low"] and float(line["interval_high"]) == interval["high"]
    by_id = {item["student_id"]: item["inside_range"] for item in body["predictions"]}
    page_rows = {row["Student id"]: "(in range)" in row["Real score"] for row in rows}
    assert page_rows == by_id


def test_the_model_page_shows_per_group_flags_and_misses_under_each_policy_as_serving_bands_them(public_model, tmp_path):
    from app import create_app

    store, test = public_model
    records = test[list(FEATURE_NAMES)].to_dict("records")
    real = test[TARGET.name].to_numpy(dtype=float)
    bands = {}
    for policy in ("all_details", "scores_only"):
        client = create_app(AppConfig(artifacts_dir=store, drift_dir=tmp_path / policy, band_policy=policy)).test_client()
        items = client.post("/predictdata", json={"instances": records}).get_json()["predictions"]
        bands[policy] = [item["band"]["name"] for item in items]
    card = client.get("/model.json").get_json()["band_policies"]
    assert (
        card["cut"] == 50.0 and card["all"]["students"] == len(test) and card["all"]["below_cut"] == int((real < 50).sum())
    )
    for feature, rows in card["groups"].items():
        for group, row in rows.items():
            mine = (test[feature] == group).to_numpy()
            assert row["students"] == int(mine.sum()) and row["below_cut"] == int((mine & (real < 50)).sum())
            for policy, names in bands.items():
                flagged = sum(1 for m, b in zip(mine, names, strict=True) if m and b == "needs_support")
                missed = sum(1 for m, r, b in zip(mine, real, names, strict=True) if m and r < 50 and b == "on_track")
                assert row[policy] == {"flagged": flagged, "missed": missed}, (feature, group, policy)
    page = html.unescape(client.get("/model").get_data(as_text=True))
    summary = re.sub(r"\s+", " ", page.split('id="policies-summary">')[1].split("</p>")[0])
    assert f"Of the {len(test)} test students" in summary and f"{card['all']['below_cut']} really scored below 50" in summary
    assert f"{card['all']['all_details']['missed']} of them" in summary and "this server uses the scores alone" in summary
    table = page.split('<table id="policy-groups">')[1].split("</table>")[0]
    row = table.split('data-group="group A">')[1].split("</tr>")[0]
    a = card["groups"]["race_ethnicity"]["group A"]
    cells = [c.strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
    assert cells == [
        "group A",
        str(a["students"]),
        str(a["below_cut"]),
        str(a["all_details"]["flagged"]),
        f"{a['all_details']['missed']} of {a['below_cut']}",
        str(a["scores_only"]["flagged"]),
        f"{a['scores_only']['missed']} of {a['below_cut']}",
    ]
