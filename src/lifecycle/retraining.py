"""Whether to retrain: new data (its fingerprint differs from the champion's), no champion yet, or drift
reported by the serving app, or low realized coverage (the real scores that arrived fell inside the 90 % range
too seldom), which the app reports beside drift."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from src.answers.evaluation import LOW_COVERAGE, LOW_COVERAGE_MIN_STUDENTS, realized_coverage_low
from src.components.data_ingestion import DataIngestionConfig, data_fingerprint
from src.storage import read_manifest
from src.store import Store

DRIFT_TIMEOUT_SECONDS = 10


class DriftCheckError(RuntimeError):
    """The serving app's drift report could not be read."""


@dataclass(frozen=True)
class RetrainReason:
    needed: bool
    reason: str


def check_drift(url: str, token: str | None = None) -> tuple[bool, str]:
    """(drift detected, what the report says) from the app's ``/drift``."""
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=DRIFT_TIMEOUT_SECONDS) as response:  # noqa: S310
            report = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DriftCheckError(f"cannot read the drift report at {url}: {err}") from err
    if not isinstance(report, Mapping):
        raise DriftCheckError(f"{url} did not answer a drift report")
    low = low_realized_coverage(report.get("realized"))
    if low is not None:
        return True, low
    if not report.get("available", False):
        return False, f"no drift report ({report.get('reason', 'not available')})"
    if report.get("drift_detected"):
        features = ", ".join(report.get("drifted_features") or []) or "the predictions"
        return True, f"the serving app reports drift ({features}; PSI >= {report.get('threshold')})"
    return False, f"no drift in the last {report.get('window_size')} students"


def low_realized_coverage(realized: object) -> str | None:
    """The reason to retrain when the app's realized figures break production's rule (as the alert does)."""
    if not isinstance(realized, Mapping):
        return None
    students, coverage = realized.get("students"), realized.get("coverage")
    if not isinstance(students, int) or not isinstance(coverage, (int, float)):
        return None
    if not realized_coverage_low(students, coverage * students):
        return None
    return (
        f"low realized coverage: the 90 % range held for {coverage:.1%} of {students} labeled students' real "
        f"scores (below {LOW_COVERAGE:.0%} over at least {LOW_COVERAGE_MIN_STUDENTS}), reported by the serving "
        f"app"
    )


def needs_retraining(
    store: Store, ingestion: DataIngestionConfig, drift_url: str | None = None, token: str | None = None
) -> RetrainReason:
    """New data means: not what the champion learnt from, nor what the latest candidate was already judged on."""
    pointer = store.read_pointer()
    if pointer is None:
        return RetrainReason(True, f"{store.location} has no champion yet")
    fingerprint, rows = data_fingerprint(ingestion)
    seen = _fingerprints(store, pointer.model_version)
    if fingerprint not in seen:
        champion_fingerprint = next(iter(seen))
        return RetrainReason(
            True,
            f"new data: {rows} valid rows with fingerprint {fingerprint[:12]}; the champion "
            f"{pointer.model_version} learnt from {champion_fingerprint[:12]}",
        )
    unchanged = f"data unchanged since {seen[fingerprint]} (fingerprint {fingerprint[:12]})"
    if drift_url:
        drifted, said = check_drift(drift_url, token)
        if drifted:
            return RetrainReason(True, said)
        return RetrainReason(False, f"{unchanged} and {said}")
    return RetrainReason(False, unchanged)


def _fingerprints(store: Store, champion: str) -> dict[str, str]:
    """{data fingerprint: version} of the champion and of the latest decided candidate (still in the store)."""
    versions = [champion]
    decided = [d.get("version") for d in store.decisions() if d.get("decision") in ("promoted", "kept")]
    if decided and decided[-1] in store.versions():
        versions.append(decided[-1])
    out: dict[str, str] = {}
    for version in versions:
        fingerprint = read_manifest(store.set_dir(version))["data"].get("fingerprint")
        out.setdefault(str(fingerprint), version)
    return out
