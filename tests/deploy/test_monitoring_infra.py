"""infra/monitoring.yml: cfn-lint clean; only the scraper reaches /metrics; retention past the 30-day alerts; the
configuration it installs is the repository's, with the placeholders it rewrites really in it."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.cfn_yaml import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "monitoring.yml"


@pytest.fixture(scope="module")
def template():
    return load(TEMPLATE)


def user_data(template) -> str:
    return template["Resources"]["Scraper"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]


def test_cfn_lint_is_clean():
    result = subprocess.run(
        [shutil.which("cfn-lint") or "cfn-lint", str(TEMPLATE)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_scraper_reaches_the_instances_metrics(template):
    resources = template["Resources"]
    ingress = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    to_instances = [i for i in ingress if i["GroupId"] == {"Ref": "InstanceSecurityGroupId"}]
    assert to_instances == [
        {
            "GroupId": {"Ref": "InstanceSecurityGroupId"},
            "Description": to_instances[0]["Description"],
            "IpProtocol": "tcp",
            "FromPort": 80,
            "ToPort": 80,
            "SourceSecurityGroupId": {"Ref": "ScraperSecurityGroup"},
        }
    ]
    assert not any("CidrIp" in i for i in ingress)  # nothing opened to an address range
    rule = resources["MonitoringClosedAtTheLoadBalancer"]["Properties"]
    assert rule["Priority"] == 1 and rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    assert {"/metrics", "/drift"} <= set(rule["Conditions"][0]["PathPatternConfig"]["Values"])


def test_discovery_may_only_describe_and_alerts_go_to_the_stacks_topic(template):
    [policy] = template["Resources"]["ScraperRole"]["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert statements["Discover"]["Action"] == ["ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"]
    assert statements["Alert"] == {
        "Sid": "Alert",
        "Effect": "Allow",
        "Action": ["sns:Publish"],
        "Resource": {"Ref": "AlertTopic"},
    }
    for statement in statements.values():
        if statement["Resource"] == "*":
            assert statement["Sid"] == "Discover"


def test_prometheus_keeps_more_than_the_alerts_thirty_days(template):
    retention = template["Parameters"]["RetentionDays"]
    assert retention["MinValue"] >= 35 and retention["Default"] >= 35
    assert "--storage.tsdb.retention.time=${RetentionDays}d" in user_data(template)
    assert "[30d]" in (ROOT / "monitoring/prometheus/alerts.yml").read_text()


def test_the_installed_configuration_is_the_repositorys_with_its_placeholders_rewritten(template):
    script = user_data(template)
    assert "apt-get install -y -qq prometheus prometheus-alertmanager" in script
    assert "promtool check config" in script and "amtool check-config" in script
    shipped = {
        "prometheus.yml": (ROOT / "monitoring/prometheus/prometheus.yml").read_text(),
        "alertmanager.yml": (ROOT / "monitoring/alertmanager/alertmanager.yml").read_text(),
    }
    for pattern, file in [
        ("region: us-east-1", "prometheus.yml"),
        ("student-math-env", "prometheus.yml"),
        ("arn:aws:sns:us-east-1:000000000000:student-math-alerts", "alertmanager.yml"),
        ("region: us-east-1", "alertmanager.yml"),
    ]:
        assert re.search(rf"s[/|]{re.escape(pattern)}[/|]", script), pattern
        assert pattern in shipped[file], (pattern, file)
    assert "/etc/prometheus/student-math.token" in shipped["prometheus.yml"]
    assert '"$conf/student-math.token"' in script
