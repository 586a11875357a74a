"""Whether to retrain: new data (its fingerprint differs from the champion's), no champion yet, drift, or low
realized coverage (the real scores that arrived fell inside the 90 % range too seldom).

Drift and realized coverage are the fleet's, from the Prometheus that scrapes every instance
(``check_fleet``); one app's ``/drift`` (``check_single_server``) is the fallback for a single server, since
behind a load balancer it is whichever instance answered, with its own window and its own real scores.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from src.answers.evaluation import LOW_COVERAGE, LOW_COVERAGE_MIN_STUDENTS, realized_coverage_low
from src.components.data_ingestion import DataIngestionConfig, data_fingerprint
from src.monitoring.fleet import REALIZED_WINDOW, FleetQueryError, Prometheus, fleet_drift, fleet_realized
from src.storage import ArtifactError, read_manifest, verify_files
from src.store import Store

DRIFT_TIMEOUT_SECONDS = 10


class DriftCheckError(RuntimeError):
    """The drift and realized figures could not be read (from Prometheus or from one app's ``/drift``)."""


@dataclass(frozen=True)
class RetrainReason:
    needed: bool
    reason: str


@dataclass(frozen=True)
class FleetCheck:
    """Where the fleet's figures come from, and the rule they are judged by (the app's drift thresholds)."""

    prometheus: Prometheus
    drift_window: str
    threshold: float
    min_samples: int


def check_fleet(check: FleetCheck, store: Store, champion: str) -> tuple[bool, str]:
    """(retrain, why) from every instance's counters summed by Prometheus: low realized coverage over the alert's
    window first, then the drift of the last ``drift_window``'s students against the champion's training data."""
    url = check.prometheus.url
    try:
        realized = fleet_realized(check.prometheus)
        students, inside = realized["students"], realized["inside"]
        if realized_coverage_low(students, inside):
            return True, (
                f"low realized coverage: the 90 % range held for {inside / students:.1%} of {students:.0f} labeled "
                f"students' real scores over the last {REALIZED_WINDOW} (below {LOW_COVERAGE:.0%} over at least "
                f"{LOW_COVERAGE_MIN_STUDENTS}), across the fleet (Prometheus at {url})"
            )
        report = fleet_drift(
            check.prometheus,
            _reference_profile(store, champion),
            window=check.drift_window,
            threshold=check.threshold,
            min_samples=check.min_samples,
        )
    except FleetQueryError as err:
        raise DriftCheckError(str(err)) from err
    seen = f"{report['window_size']} students of the last {check.drift_window} on {report['instances']} instance(s)"
    if report["drift_detected"]:
        features = ", ".join(report["drifted_features"])
        return True, f"the fleet's students drifted ({features}; PSI >= {check.threshold}; {seen}, Prometheus at {url})"
    if not report["enough_data"]:
        return False, f"too few students to tell drift ({seen}; {check.min_samples} needed)"
    return False, f"no drift across the fleet ({seen})"


def _reference_profile(store: Store, version: str) -> Mapping[str, object]:
    """The champion's training profile, from its verified set."""
    directory = store.set_dir(version)
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    name = manifest.get("reference_profile")
    if not name or name not in manifest["files"]:
        raise ArtifactError(f"the champion {version} has no reference profile: its drift cannot be computed")
    return json.loads((directory / name).read_text(encoding="utf-8"))


def check_single_server(url: str, token: str | None = None) -> tuple[bool, str]:
    """(retrain, why) from one app's ``/drift`` (its own window and its own real scores since it started): the
    fallback for a single server, never for instances behind a load balancer."""
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
    store: Store,
    ingestion: DataIngestionConfig,
    drift_url: str | None = None,
    token: str | None = None,
    *,
    fleet: FleetCheck | None = None,
) -> RetrainReason:
    """New data means: not what the champion learnt from, nor what the latest candidate was already judged on.
    Then the fleet's figures (``fleet``), or one server's ``/drift`` (``drift_url``, the single-server fallback)."""
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
    if fleet is not None:
        drifted, said = check_fleet(fleet, store, pointer.model_version)
        return RetrainReason(drifted, said if drifted else f"{unchanged} and {said}")
    if drift_url:
        drifted, said = check_single_server(drift_url, token)
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
