"""The fleet's drift and realized coverage, read from Prometheus' HTTP query API.

Every instance counts what it saw in counters (the score bins of src.monitoring.bins, the category counts and
the realized counters of src.monitoring.metrics); Prometheus scrapes each instance and sums their increase
over a window across the fleet. Counters survive a scrape landing anywhere and an instance's restart
(``increase()`` handles resets), which neither one server's window nor one server's totals do. The PSI is then
computed by the same function as one server's report (``report_from_counts``), with the same thresholds.

``increase()`` extrapolates to the window's edges, so the sums are within a scrape interval's share of the exact
counts (invisible over days); the alerts read the same expressions, so the decisions and the alerts agree.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.monitoring.bins import NAME as SCORE_BINS
from src.monitoring.bins import SCORED, bin_upper
from src.monitoring.drift import reference_bin, report_from_counts
from src.schema import CATEGORICAL_FEATURES

JOB = "student-math"  # the scrape job of monitoring/prometheus/prometheus.yml
REALIZED_WINDOW = "30d"  # the realized-coverage alert's window (monitoring/prometheus/alerts.yml)
DRIFT_WINDOW = "7d"  # retraining's default: the retraining schedule's period
QUERY_TIMEOUT_SECONDS = 10.0
REALIZED = {
    "students": "model_realized_students_total",
    "absolute_error": "model_realized_absolute_error_total",
    "inside": "model_realized_inside_range_total",
    "below_cut": "model_realized_below_cut_total",
}
_DURATION = re.compile(r"[1-9][0-9]{0,5}[smhdwy]")
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


class FleetQueryError(RuntimeError):
    """Prometheus could not be asked, or did not have what the question needs."""


def check_duration(value: str, what: str) -> str:
    """A Prometheus range (``7d``, ``12h``): a whole number and one unit, else ValueError naming the field."""
    if not _DURATION.fullmatch(value):
        raise ValueError(
            f"{what} must be a Prometheus duration such as 7d, 12h or 30m (one number and one unit), got {value!r}"
        )
    return value


def check_url(value: str, what: str) -> str:
    """An http(s) address of a Prometheus server (its base, without a query), else ValueError naming the field."""
    if not _URL.fullmatch(value):
        raise ValueError(f"{what} must be an http:// or https:// address of a Prometheus server, got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class Prometheus:
    """A Prometheus server's instant queries (``GET /api/v1/query``), evaluated now or at the Unix time ``at``."""

    url: str
    timeout: float = QUERY_TIMEOUT_SECONDS
    at: float | None = None

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """The vector ``expr`` evaluates to: (labels, value) per series."""
        params = {"query": expr, **({"time": f"{self.at:.3f}"} if self.at is not None else {})}
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(address, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) checked
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise FleetQueryError(f"Prometheus at {self.url} refused the query {expr!r}: HTTP {err.code}") from err
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise FleetQueryError(f"cannot ask Prometheus at {self.url}: {err}") from err
        if not isinstance(body, Mapping) or body.get("status") != "success":
            raise FleetQueryError(f"Prometheus at {self.url} did not answer the query {expr!r}: {body!r:.300}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise FleetQueryError(f"Prometheus at {self.url} answered {data.get('resultType')!r} to {expr!r}, not a vector")
        try:
            return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise FleetQueryError(f"Prometheus at {self.url} answered an unreadable vector to {expr!r}") from err

    def instances(self) -> int:
        """How many instances answered their last scrape."""
        return int(sum(v for _, v in self.query(f'sum(up{{job="{JOB}"}} == bool 1)')))


def fleet_drift(
    prometheus: Prometheus, profile: Mapping[str, Any], *, window: str, threshold: float, min_samples: int
) -> dict[str, Any]:
    """The drift report of every instance's students of the last ``window`` against a model's reference profile."""
    check_duration(window, "the drift window")
    scores = prometheus.query(f'sum by (feature, bin) (increase({SCORE_BINS}_total{{job="{JOB}"}}[{window}]))')
    categories = prometheus.query(
        f'sum by (feature, category) (increase(model_input_category_total{{job="{JOB}"}}[{window}]))'
    )
    if not scores:
        raise FleetQueryError(
            f"Prometheus at {prometheus.url} has no {SCORE_BINS}_total series of job {JOB}: no instance is scraped"
        )
    counts: dict[str, np.ndarray] = {}
    for name in SCORED:
        counts[name] = np.zeros(len(profile["features"][name]["edges"]) + 1)
    for labels, value in scores:
        name = labels.get("feature")
        if name in counts:
            counts[name][reference_bin(profile, name, bin_upper(labels["bin"]))] += value
    for feature in CATEGORICAL_FEATURES:
        known = {c: i for i, c in enumerate(profile["features"][feature.name]["categories"])}
        counts[feature.name] = np.zeros(len(known))
    for labels, value in categories:
        name, category = labels.get("feature"), labels.get("category")
        if name in counts and category in profile["features"].get(name, {}).get("categories", ()):
            counts[name][profile["features"][name]["categories"].index(category)] += value
    students = float(counts[SCORED[-1]].sum())
    report = report_from_counts(profile, counts, round(students), threshold=threshold, min_samples=min_samples)
    return {"available": True, "source": "fleet", "window": window, "instances": prometheus.instances(), **report}


def fleet_realized(prometheus: Prometheus, window: str = REALIZED_WINDOW) -> dict[str, Any]:
    """The realized counters' increase over ``window`` summed over every instance, overall and per group, in the
    shape of ``RealizedMetrics.totals`` (src.answers.evaluation.realized_report reads either)."""
    check_duration(window, "the realized window")
    out: dict[str, Any] = {}
    groups: dict[str, dict[str, dict[str, float]]] = {
        f.name: {c: dict.fromkeys(REALIZED, 0.0) for c in f.categories} for f in CATEGORICAL_FEATURES
    }
    for key, name in REALIZED.items():
        overall = prometheus.query(f'sum(increase({name}{{job="{JOB}"}}[{window}]))')
        if not overall:
            raise FleetQueryError(
                f"Prometheus at {prometheus.url} has no {name} series of job {JOB}: no instance is scraped"
            )
        out[key] = overall[0][1]
        grouped = name.replace("model_realized_", "model_realized_group_")
        for labels, value in prometheus.query(f'sum by (feature, group) (increase({grouped}{{job="{JOB}"}}[{window}]))'):
            row = groups.get(labels.get("feature", ""), {}).get(labels.get("group", ""))
            if row is not None:
                row[key] = value
    out["groups"] = groups
    return out
