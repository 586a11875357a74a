"""The environment's load balancer and the monitoring token, deployed into moto and asked where requests go.

Elastic Beanstalk builds the load balancer of the environment's own stack: its target group, and the HTTPS
listener from the ``aws:elbv2:listener:443`` options of infra/pipeline.yml; ``.ebextensions`` (and, with
sign-in, infra/sign-in.config) change or add listeners and rules there. This test builds that stack in moto
the same way: the load balancer and target group as Beanstalk names them, the 443 listener from the
template's options, and the extension files' resources verbatim (``Fn::GetOptionSetting`` read from the
template's options). The secret is made from the template's properties through the Secrets Manager API
(moto's CloudFormation has no secrets). Then each request is routed by the rules moto returns, and where
they forward, answered by the app configured with the token read back from Secrets Manager.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from src.config import AppConfig
from tests.deploy.cfn_yaml import load
from tests.deploy.moto_parts import create_secret
from tests.deploy.test_ebextensions import CUSTOM, template_settings

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
SIGN_IN = {
    "SignInIssuer": "https://login.example-district.org",
    "SignInAuthorizationEndpoint": "https://login.example-district.org/authorize",
    "SignInTokenEndpoint": "https://login.example-district.org/token",
    "SignInUserInfoEndpoint": "https://login.example-district.org/userinfo",
    "SignInClientId": "student-math",
    "SignInClientSecret": "client-secret-from-the-school",
}


def resolve(node: Any, values: dict[str, Any]) -> Any:
    """Replace ``Ref`` to a parameter and ``Fn::GetOptionSetting`` by their values; keep other references."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        if "Fn::GetOptionSetting" in node:
            return values[node["Fn::GetOptionSetting"]["OptionName"]]
        return {k: resolve(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, values) for v in node]
    return node


def environment_stack(template: dict, parameters: dict[str, str], sign_in: bool) -> dict[str, Any]:
    """The load balancer part of the environment's stack, as Beanstalk would build it from our files."""
    values = {name: spec.get("Default") for name, spec in template["Parameters"].items()} | parameters
    options = [resolve(s, values) for s in template_settings(template)]
    if not sign_in:  # the stack sets the custom options only when SignInIssuer is set
        options = [s for s in options if s["Namespace"] != CUSTOM]
    https = {s["OptionName"]: s["Value"] for s in options if s["Namespace"] == "aws:elbv2:listener:443"}
    custom = {s["OptionName"]: s["Value"] for s in options if s["Namespace"] == CUSTOM}
    process = {
        s["OptionName"]: s["Value"] for s in options if s["Namespace"] == "aws:elasticbeanstalk:environment:process:default"
    }
    resources: dict[str, Any] = {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        **{
            f"Subnet{zone.upper()}": {
                "Type": "AWS::EC2::Subnet",
                "Properties": {
                    "VpcId": {"Ref": "Vpc"},
                    "CidrBlock": f"10.0.{i}.0/24",
                    "AvailabilityZone": f"{REGION}{zone}",
                },
            }
            for i, zone in enumerate("ab")
        },
        "AWSEBV2LoadBalancer": {
            "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Properties": {
                "Type": "application",
                "Scheme": "internet-facing",
                "Subnets": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}],
            },
        },
        "AWSEBV2LoadBalancerTargetGroup": {
            "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Properties": {
                "VpcId": {"Ref": "Vpc"},
                "Port": int(process["Port"]),
                "Protocol": process["Protocol"],
                "HealthCheckPath": process["HealthCheckPath"],
                "Matcher": {"HttpCode": process["MatcherHTTPCode"]},
            },
        },
        # Beanstalk's port 80 listener forwards to the instances, whose nginx redirects to HTTPS (the bundle's
        # .platform; tests/deploy/test_instance.py runs it).
        "AWSEBV2LoadBalancerListener": {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Properties": {
                "LoadBalancerArn": {"Ref": "AWSEBV2LoadBalancer"},
                "Port": 80,
                "Protocol": "HTTP",
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": {"Ref": "AWSEBV2LoadBalancerTargetGroup"}}],
            },
        },
        "AWSEBV2LoadBalancerListener443": {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Properties": {
                "LoadBalancerArn": {"Ref": "AWSEBV2LoadBalancer"},
                "Port": 443,
                "Protocol": https["Protocol"],
                "Certificates": [{"CertificateArn": https["SSLCertificateArns"]}],
                "SslPolicy": https["SSLPolicy"],
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": {"Ref": "AWSEBV2LoadBalancerTargetGroup"}}],
            },
        },
    }
    files = sorted((ROOT / ".ebextensions").glob("*.config"))
    if sign_in:
        files.append(ROOT / "infra" / "sign-in.config")
    for path in files:
        resources.update(resolve(yaml.safe_load(path.read_text()).get("Resources", {}), custom))
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}


def matches(condition: dict[str, Any], path: str, headers: dict[str, str]) -> bool:
    """An ALB rule condition (path-pattern, http-header; * and ? wildcards) against one request."""
    if condition["Field"] == "path-pattern":
        return any(fnmatch.fnmatchcase(path, v) for v in condition["PathPatternConfig"]["Values"])
    if condition["Field"] == "http-header":
        config = condition["HttpHeaderConfig"]
        sent = {k.lower(): v for k, v in headers.items()}.get(config["HttpHeaderName"].lower())
        return sent is not None and any(fnmatch.fnmatch(sent.lower(), v.lower()) for v in config["Values"])
    raise AssertionError(f"no matcher for {condition['Field']}")


def route(elbv2: Any, listener_arn: str, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """The actions of the first rule (by priority, the default last) that matches the request."""
    rules = elbv2.describe_rules(ListenerArn=listener_arn)["Rules"]
    ordered = sorted((r for r in rules if not r["IsDefault"]), key=lambda r: int(r["Priority"]))
    for rule in [*ordered, *[r for r in rules if r["IsDefault"]]]:
        if all(matches(c, path, headers) for c in rule["Conditions"]):
            return sorted(rule["Actions"], key=lambda a: a.get("Order", 0))
    raise AssertionError("no rule matched, not even the default")


@pytest.fixture(scope="module")
def template():
    return load(ROOT / "infra" / "pipeline.yml")


def deploy(template: dict, sign_in: bool) -> tuple[Any, dict[str, dict], str, str]:
    """Inside mock_aws: the certificate, the secret and the environment's load balancer stack."""
    acm = boto3.client("acm", region_name=REGION)
    certificate = acm.request_certificate(DomainName="scores.example-district.org")["CertificateArn"]
    secret_properties = template["Resources"]["MetricsToken"]["Properties"]
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secret_arn = create_secret(secrets, {**secret_properties, "Name": "student-math/metrics-token"})
    parameters = {"CertificateArn": certificate, "DomainName": "scores.example-district.org", **(SIGN_IN if sign_in else {})}
    body = environment_stack(template, parameters, sign_in)
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(StackName="awseb-e-student-math", TemplateBody=json.dumps(body))
    assert cfn.describe_stacks(StackName="awseb-e-student-math")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    elbv2 = boto3.client("elbv2", region_name=REGION)
    balancer = elbv2.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    listeners = {str(ls["Port"]): ls for ls in elbv2.describe_listeners(LoadBalancerArn=balancer)["Listeners"]}
    token = secrets.get_secret_value(SecretId=secret_arn)["SecretString"]
    return elbv2, listeners, certificate, token


API_TOKEN = "token-of-a-school-system-0123456789"


def serve(store_dir: Path, tmp_path: Path, token: str, sign_in: bool = False):
    """The app as an instance runs it: METRICS_TOKEN is the secret's value (environmentsecrets), SIGN_IN and
    API_TOKEN_SHA256 as the stack sets them."""
    from app import create_app

    config = AppConfig.from_env(
        {
            "ARTIFACTS_DIR": str(store_dir),
            "DRIFT_DIR": str(tmp_path / "drift"),
            "METRICS_TOKEN": token,
            "MODEL_REFRESH_SECONDS": "0",
            "API_TOKEN_SHA256": hashlib.sha256(API_TOKEN.encode()).hexdigest(),
            "SIGN_IN": "on" if sign_in else "off",
        }
    )
    return create_app(config).test_client()


def answer(client, actions: list[dict[str, Any]], path: str, headers: dict[str, str]) -> int | str:
    """What the client gets: the app's status where the load balancer forwards, else what the balancer does."""
    if actions[0]["Type"] == "forward":
        return client.get(path, headers={**headers, "X-Forwarded-Proto": "https"}).status_code
    return actions[0]["Type"]


def test_port_80_reaches_nginx_443_forwards_with_tls13_and_monitoring_needs_the_stacks_token(template, store_dir, tmp_path):
    with mock_aws():
        elbv2, listeners, certificate, token = deploy(template, sign_in=False)
        assert set(listeners) == {"80", "443"}
        # Port 80 reaches the instances' nginx on port 80, which redirects (tests/deploy/test_instance.py).
        (forward,) = listeners["80"]["DefaultActions"]
        assert forward["Type"] == "forward"
        (group,) = elbv2.describe_target_groups()["TargetGroups"]
        assert group["Port"] == 80 and group["HealthCheckPath"] == "/ready"
        https = listeners["443"]
        assert https["Protocol"] == "HTTPS" and https["Certificates"] == [{"CertificateArn": certificate}]
        assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
        assert [a["Type"] for a in https["DefaultActions"]] == ["forward"]
        assert len(token) == 48 and token.isalnum()  # what the app accepts as METRICS_TOKEN (16+ characters)

        client = serve(store_dir, tmp_path, token)
        arn = https["ListenerArn"]
        wrong = {"Authorization": "Bearer " + "x" * 48}
        right = {"Authorization": f"Bearer {token}"}
        for path in ("/metrics", "/drift"):
            assert answer(client, route(elbv2, arn, path, {}), path, {}) == 401
            assert answer(client, route(elbv2, arn, path, wrong), path, wrong) == 401
            assert answer(client, route(elbv2, arn, path, right), path, right) == 200
        assert answer(client, route(elbv2, arn, "/predictdata", {}), "/predictdata", {}) == 200
        page = client.get("/predictdata", headers={"X-Forwarded-Proto": "https"})
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")


def test_with_sign_in_teachers_sign_in_first_and_bearer_callers_pass_to_the_apps_own_check(template, store_dir, tmp_path):
    with mock_aws():
        elbv2, listeners, _, token = deploy(template, sign_in=True)
        arn = listeners["443"]["ListenerArn"]
        rules = {r["Priority"]: r for r in elbv2.describe_rules(ListenerArn=arn)["Rules"]}
        oidc = route(elbv2, arn, "/predictdata", {})
        assert [a["Type"] for a in oidc] == ["authenticate-oidc", "forward"]
        config = oidc[0]["AuthenticateOidcConfig"]
        assert config["Issuer"] == SIGN_IN["SignInIssuer"] and config["ClientId"] == "student-math"
        assert config["OnUnauthenticatedRequest"] == "authenticate"
        client = serve(store_dir, tmp_path, token, sign_in=True)
        for path in ("/", "/predictdata", "/model", "/metrics", "/drift"):  # no page without signing in
            assert answer(client, route(elbv2, arn, path, {}), path, {}) == "authenticate-oidc", path
        wrong = {"Authorization": "Bearer not-the-token-of-this-stack"}
        right = {"Authorization": f"Bearer {token}"}
        for path in ("/metrics", "/drift"):
            assert answer(client, route(elbv2, arn, path, wrong), path, wrong) == 401
            assert answer(client, route(elbv2, arn, path, right), path, right) == 200
        # A made-up bearer token opens no page: the pages' paths sign in first, and the app refuses it anyway.
        for path in ("/", "/model", "/model.json", "/predictdata"):
            assert answer(client, route(elbv2, arn, path, wrong), path, wrong) in ("authenticate-oidc", 401), path
            assert client.get(path, headers={**wrong, "X-Forwarded-Proto": "https"}).status_code == 401, path
        form = client.post("/predictdata", data={"gender": "female"}, headers={**wrong, "X-Forwarded-Proto": "https"})
        assert form.status_code == 401
        api = {"Authorization": f"Bearer {API_TOKEN}"}
        assert client.get("/model", headers={**api, "X-Forwarded-Proto": "https"}).status_code == 200
        assert set(rules) == {"1", "2", "default"}
        # Plain HTTP forwards to nginx, which redirects before any page (tests/deploy/test_instance.py).
        assert listeners["80"]["DefaultActions"][0]["Type"] == "forward"
