"""Check that every PromQL expression in the Grafana dashboards and alert rules parses, with promtool.

Grafana's variables ($__rate_interval, $__interval, $__range, ...) are replaced by durations, the
expressions are written as recording rules into a temporary rules file, and ``promtool check rules`` parses
them. Exit code 0 when all parse; the count is printed either way.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "monitoring" / "grafana"
VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h", "$__range_s": "3600"}


def expressions() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    for path in sorted((GRAFANA / "provisioning" / "alerting").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                for query in rule["data"]:
                    if query["datasourceUid"] != "__expr__":
                        found.append((f"{path.name}: {rule['title']}", query["model"]["expr"]))
    return found


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    leftover = re.findall(r"\$[A-Za-z_]\w*", expr)  # $1, $2: label_replace's references, not variables
    if leftover:
        raise ValueError(f"unknown variable(s) {leftover} in {expr}")
    return expr


def main() -> int:
    found = expressions()
    rules = [{"record": f"check:expr_{i}", "expr": substitute(expr)} for i, (_, expr) in enumerate(found)]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        yaml.safe_dump({"groups": [{"name": "grafana-promql", "rules": rules}]}, handle)
    result = subprocess.run(["promtool", "check", "rules", handle.name], capture_output=True, text=True, check=False)
    Path(handle.name).unlink()
    sys.stdout.write(
        f"{len(found)} PromQL expressions from Grafana dashboards and alert rules: "
        f"{'all parse' if result.returncode == 0 else 'FAILED'}\n"
    )
    if result.returncode != 0:
        sys.stdout.write(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
