"""The model card of a loaded model: what the /model page and /model.json show, read from its set folder only.

Everything comes from the set's manifest (written at training) and, for the history of champions, from the
store's decision records: no MLflow, no training data at serving.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from src import schema
from src.components.data_ingestion import SYNTHETIC_SOURCE
from src.components.group_metrics import SMALL_GROUP

logger = logging.getLogger(__name__)

DECISIONS = ("promoted", "kept", "refused", "promoted by hand", "rollback")
HISTORY_LIMIT = 50

INTENDED_USE = (
    "Support planning: to spot early which students may need help in math, so that a teacher can look "
    "closer and offer support. Never for grading, ranking, admission, placement or any decision about a "
    "student on its own: a prediction is an estimate with a range, not a measurement of the student."
)
LIMITATIONS = (
    "Trained on the data named on this page (under “The model serving now”): a synthetic cohort or a small "
    "public data set, not your school's students; check it on your own students before relying on it.",
    "It learns correlations, not causes: a background feature that shifts the prediction does not make a "
    "student better or worse at math, and changing it would not change the student's score.",
    "Errors differ between groups of students (see “For whom it is worse” above); groups with few test "
    "students have uncertain figures.",
    "The 90 % range is right about 9 times in 10 on average over the test students, not for every student.",
    "Reading and writing scores carry most of the prediction; a student whose situation changed since those "
    "exams is predicted from outdated information.",
)


EVIDENCE_AND_ASSOCIATION = (
    "The prediction rests on the student's reading and writing scores: the teacher's page shows how each moves "
    "the prediction against the average student, in points. Everything else the model uses, the test "
    "preparation course included, is an association: in past data, students with the same reading and writing "
    "scores scored this much higher or lower on average. It is not an effect (the course does not lower a "
    "score because its term is negative), so the teacher's page never lists it as a reason to act; it says "
    "when background details decided a student's band. The JSON answer and the batch files keep every "
    "contribution, exactly, for data teams."
)


def champion_history(records: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The store's decisions as the page shows them (version, decision, reason, at), newest last.

    Records of unknown kinds, or that are not objects, are left out: the page must still show the model.
    """
    entries = []
    for item in records[-HISTORY_LIMIT:]:
        if not isinstance(item, Mapping) or item.get("decision") not in DECISIONS:
            continue
        entries.append({key: str(item.get(key, "")) for key in ("version", "decision", "reason", "at")})
    return entries


def source_name(source: str) -> str:
    """The training data as the page names it: the file's name only (no server path, host, user or query)."""
    if source == SYNTHETIC_SOURCE:
        return "synthetic students (made up, not real)"
    path = urlsplit(source).path if "://" in source else source.replace("\\", "/")
    return PurePosixPath(path).name or "unnamed data"


def plain_summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What a head of year asks first, from the test split's figures: how far off, how often the range holds,
    for whom it is worse (the group of at least SMALL_GROUP test students with the largest mean error)."""
    test = manifest["metrics"]["test"]
    groups = manifest.get("groups", {})
    worst = None
    for feature, rows in groups.items():
        for group, row in rows.items():
            if row.get("mae") is None or row.get("small"):
                continue
            if worst is None or row["mae"] > worst["mae"]:
                worst = {"feature": feature, "group": group, "mae": row["mae"], "count": row["count"]}
    first = next(iter(groups.values()), {})
    return {
        "test_rows": sum(int(row.get("count", 0)) for row in first.values()) or None,
        "mae": test["mae"],
        "coverage": test["interval_coverage"],
        "level": manifest["interval"]["level"],
        "half_width": manifest["interval"]["half_width"],
        "worst_group": worst,
        "below_cut": manifest["metrics"].get("below_cut"),
    }


def model_card(
    manifest: Mapping[str, Any], history: list[dict[str, Any]], drift: Mapping[str, Any], scorer: str
) -> dict[str, Any]:
    """The page's content as JSON: the model, its data, metrics, groups, plots, drift now, history, card."""
    data = manifest.get("data", {})
    excluded = list(manifest.get("excluded_features", []))
    used = manifest.get("features_used") or [n for n in schema.FEATURE_NAMES if n not in excluded]
    return {
        "model_version": manifest["model_version"],
        "model": manifest["model"],
        "created_at": manifest.get("created_at"),
        "scorer": scorer,
        "data": {
            "source": source_name(str(data.get("source", ""))),
            "fingerprint": data.get("fingerprint"),
            "rows_read": data.get("rows_read"),
            "rows_valid": data.get("rows_valid"),
            "rows_rejected": data.get("rows_rejected"),
            "test_size": data.get("test_size"),
            "seed": data.get("seed"),
        },
        "summary": plain_summary(manifest),
        "metrics": {
            "test": dict(manifest["metrics"]["test"]),
            "cv": dict(manifest["metrics"].get("cv", {})),
            "below_cut": manifest["metrics"].get("below_cut"),
        },
        "interval": dict(manifest["interval"]),
        "groups": manifest.get("groups", {}),
        # per student group of the test split: flagged, really below the cut, missed under each band policy
        # (None for a model trained before these were recorded)
        "band_policies": manifest.get("band_policies"),
        "small_group_rows": SMALL_GROUP,
        "plots": [name for name in manifest.get("plots", []) if name in manifest.get("files", {})],
        "features_used": list(used),
        "excluded_features": excluded,
        "drift": dict(drift),
        "history": history,
        "card": {
            "intended_use": INTENDED_USE,
            "limitations": list(LIMITATIONS),
            "evidence_and_association": EVIDENCE_AND_ASSOCIATION,
        },
    }


def drift_summary(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """The drift status for the page: available, detected, window size, drifted features."""
    if report is None:
        return {"available": False, "reason": "drift tracking is off on this server"}
    if not report.get("available"):
        return {
            "available": False,
            "reason": str(report.get("reason", "no drift report")),
            "window_size": report.get("window_size"),
        }
    return {
        "available": True,
        "drift_detected": bool(report["drift_detected"]),
        "enough_data": bool(report["enough_data"]),
        "window_size": int(report["window_size"]),
        "min_samples": int(report["min_samples"]),
        "threshold": float(report["threshold"]),
        "drifted_features": list(report.get("drifted_features", [])),
    }
