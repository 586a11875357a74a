"""Every option of the environment is one AWS documents for Elastic Beanstalk, and lives where a deploy accepts it.

The options live in infra/pipeline.yml; the bundle's .ebextensions carry instance commands only, since an
immutable deployment refuses configuration files that change settings or add resources.
"""

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.cfn_yaml import load

ROOT = Path(__file__).resolve().parents[2]

# Namespaces and options from the Elastic Beanstalk documentation ("Configuration options": general options
# for all environments, and the Python platform's). Only namespaces this project uses are listed with
# their options; adding a namespace means adding its documented options here.
DOCUMENTED = {
    "aws:elasticbeanstalk:container:python": {"WSGIPath", "NumProcesses", "NumThreads"},
    "aws:elasticbeanstalk:environment:process:default": {
        "DeregistrationDelay",
        "HealthCheckInterval",
        "HealthCheckPath",
        "HealthCheckTimeout",
        "HealthyThresholdCount",
        "MatcherHTTPCode",
        "Port",
        "Protocol",
        "StickinessEnabled",
        "StickinessLBCookieDuration",
        "StickinessType",
        "UnhealthyThresholdCount",
    },
    "aws:elasticbeanstalk:healthreporting:system": {
        "SystemType",
        "ConfigDocument",
        "EnhancedHealthAuthEnabled",
        "HealthCheckSuccessThreshold",
    },
    "aws:elasticbeanstalk:cloudwatch:logs": {"StreamLogs", "DeleteOnTerminate", "RetentionInDays"},
    "aws:elasticbeanstalk:cloudwatch:logs:health": {"HealthStreamingEnabled", "DeleteOnTerminate", "RetentionInDays"},
    "aws:autoscaling:launchconfiguration": {
        "DisableIMDSv1",
        "EC2KeyName",
        "IamInstanceProfile",
        "ImageId",
        "InstanceType",
        "MonitoringInterval",
        "SecurityGroups",
        "SSHSourceRestriction",
        "BlockDeviceMappings",
        "RootVolumeType",
        "RootVolumeSize",
        "RootVolumeIOPS",
        "RootVolumeThroughput",
    },
    "aws:elasticbeanstalk:environment": {
        "EnvironmentType",
        "LoadBalancerIsShared",
        "LoadBalancerType",
        "ServiceRole",
        "ServiceLinkedRoleForManagedUpdates",
    },
    # aws:elbv2:listener:listener_port, for the port named in the namespace (443 here)
    "aws:elbv2:listener:listener_port": {
        "DefaultProcess",
        "ListenerEnabled",
        "Protocol",
        "Rules",
        "SSLCertificateArns",
        "SSLPolicy",
    },
    "aws:elasticbeanstalk:command": {"DeploymentPolicy", "Timeout", "BatchSizeType", "BatchSize", "IgnoreHealthCheck"},
    "aws:elasticbeanstalk:managedactions": {"ManagedActionsEnabled", "PreferredStartTime", "ServiceRoleForManagedUpdates"},
    "aws:elasticbeanstalk:managedactions:platformupdate": {"UpdateLevel", "InstanceRefreshEnabled"},
    "aws:elbv2:loadbalancer": {
        "AccessLogsS3Bucket",
        "AccessLogsS3Enabled",
        "AccessLogsS3Prefix",
        "IdleTimeout",
        "ManagedSecurityGroup",
        "SecurityGroups",
    },
    "aws:autoscaling:updatepolicy:rollingupdate": {
        "MaxBatchSize",
        "MinInstancesInService",
        "RollingUpdateEnabled",
        "RollingUpdateType",
        "PauseTime",
        "Timeout",
    },
    "aws:autoscaling:asg": {
        "Availability Zones",
        "Cooldown",
        "Custom Availability Zones",
        "EnableCapacityRebalancing",
        "MinSize",
        "MaxSize",
    },
    "aws:autoscaling:trigger": {
        "BreachDuration",
        "LowerBreachScaleIncrement",
        "LowerThreshold",
        "MeasureName",
        "Period",
        "EvaluationPeriods",
        "Statistic",
        "Unit",
        "UpperBreachScaleIncrement",
        "UpperThreshold",
    },
}
# Documented values of the options whose values are a closed set.
DOCUMENTED_VALUES = {
    ("aws:elasticbeanstalk:command", "DeploymentPolicy"): {
        "AllAtOnce",
        "Rolling",
        "RollingWithAdditionalBatch",
        "Immutable",
        "TrafficSplitting",
    },
    ("aws:autoscaling:updatepolicy:rollingupdate", "RollingUpdateType"): {"Time", "Health", "Immutable"},
    ("aws:autoscaling:asg", "Availability Zones"): {"Any", "Any 1", "Any 2", "Any 3"},
    ("aws:autoscaling:trigger", "MeasureName"): {
        "CPUUtilization",
        "NetworkIn",
        "NetworkOut",
        "DiskWriteOps",
        "DiskReadBytes",
        "DiskReadOps",
        "DiskWriteBytes",
        "Latency",
        "RequestCount",
        "HealthyHostCount",
        "UnhealthyHostCount",
        "TargetResponseTime",
    },
    ("aws:autoscaling:trigger", "Statistic"): {"Minimum", "Maximum", "Sum", "Average"},
    ("aws:autoscaling:trigger", "Unit"): {
        "Seconds",
        "Percent",
        "Bytes",
        "Bits",
        "Count",
        "Bytes/Second",
        "Bits/Second",
        "Count/Second",
        "None",
    },
    ("aws:elbv2:listener:listener_port", "Protocol"): {"HTTP", "HTTPS"},
    ("aws:elasticbeanstalk:managedactions:platformupdate", "UpdateLevel"): {"patch", "minor"},
    ("aws:elasticbeanstalk:environment:process:default", "Protocol"): {"HTTP", "HTTPS"},
}
# Elastic Load Balancing's predefined TLS 1.3 security policies for Application Load Balancers.
TLS13_POLICIES = {
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
}
# Keys are environment variable names (the second: their values are Secrets Manager ARNs).
FREE_FORM = {"aws:elasticbeanstalk:application:environment", "aws:elasticbeanstalk:application:environmentsecrets"}
CUSTOM = "aws:elasticbeanstalk:customoption"  # the application's own options, read by Fn::GetOptionSetting
# The resources of an environment's stack that Elastic Beanstalk documents by name (ALB environments).
EB_RESOURCES = {
    "AWSEBV2LoadBalancer",
    "AWSEBV2LoadBalancerListener",
    "AWSEBV2LoadBalancerListener443",
    "AWSEBV2LoadBalancerTargetGroup",
    "AWSEBAutoScalingGroup",
    "AWSEBSecurityGroup",
}
CONFIG_KEYS = {
    "option_settings",
    "packages",
    "groups",
    "users",
    "sources",
    "files",
    "commands",
    "services",
    "container_commands",
    "Resources",
    "Outputs",
}


def configs() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / ".ebextensions").glob("*.config"))}


def documented_namespace(namespace: str) -> str:
    """``aws:elbv2:listener:443`` is the documented ``aws:elbv2:listener:listener_port`` for port 443."""
    if re.fullmatch(r"aws:elbv2:listener:\d+", namespace):
        return "aws:elbv2:listener:listener_port"
    return namespace


def template_settings(template: dict) -> list[dict]:
    """The environment's OptionSettings, each conditional one (``!If [cond, setting, NoValue]``) unwrapped."""
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::ElasticBeanstalk::Environment":
            for s in resource["Properties"]["OptionSettings"]:
                found.append(s["Fn::If"][1] if "Fn::If" in s else s)
    return found


def settings():
    for name, config in configs().items():
        for namespace, options in config.get("option_settings", {}).items():
            for option, value in options.items():
                yield name, namespace, option, value
    for s in template_settings(load(ROOT / "infra" / "pipeline.yml")):
        yield "infra/pipeline.yml", s["Namespace"], s["OptionName"], s["Value"]


def test_config_files_use_only_documented_sections():
    found = configs()
    assert found
    for name, config in found.items():
        assert set(config) <= CONFIG_KEYS, name


def test_every_option_is_documented():
    seen = list(settings())
    assert len(seen) >= 15
    for source, namespace, option, value in seen:
        if namespace in FREE_FORM:
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", option), f"{source}: {option} is not an environment name"
            continue
        if namespace == CUSTOM:
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", option), f"{source}: custom option {option}"
            continue
        documented = documented_namespace(namespace)
        assert documented in DOCUMENTED, f"{source}: undocumented namespace {namespace}"
        assert option in DOCUMENTED[documented], f"{source}: {namespace} has no option {option}"
        allowed = DOCUMENTED_VALUES.get((documented, option))
        choices = value["Fn::If"][1:] if isinstance(value, dict) and "Fn::If" in value else [value]
        for choice in choices:
            if allowed is not None and isinstance(choice, str):
                assert choice in allowed, f"{source}: {namespace} {option} cannot be {choice!r}"


def test_the_bundles_configuration_files_change_no_setting_and_add_no_resource():
    """What an immutable deployment accepts: instance commands, no option_settings, no Resources."""
    found = configs()
    assert found
    for name, config in found.items():
        assert "option_settings" not in config and "Resources" not in config, name
        assert set(config) <= {"commands", "container_commands", "files", "packages", "users", "groups"}, name
    assert not list((ROOT / ".ebextensions").glob("*.yml")) and not list((ROOT / ".ebextensions").glob("*.yaml"))


def test_settings_match_the_app():
    values = {(ns, opt): val for _, ns, opt, val in settings()}
    module, attribute = values[("aws:elasticbeanstalk:container:python", "WSGIPath")].split(":")
    assert (ROOT / f"{module}.py").is_file()
    assert (ROOT / "Procfile").read_text().strip().endswith(f" {module}:{attribute}")
    app_module = importlib.import_module(module)
    assert hasattr(app_module, attribute)
    assert values[("aws:elasticbeanstalk:environment:process:default", "HealthCheckPath")] == "/ready"
    assert "/ready" in {r.rule for r in app_module.app.url_map.iter_rules()}
    assert values[("aws:elasticbeanstalk:healthreporting:system", "SystemType")] == "enhanced"
    assert values[("aws:autoscaling:launchconfiguration", "RootVolumeSize")] == "30"
    env = {opt: val for (ns, opt), val in values.items() if ns == "aws:elasticbeanstalk:application:environment"}
    assert {"MODEL_URI", "PROMETHEUS_MULTIPROC_DIR", "TMPDIR"} <= env.keys()
    assert values[("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs")] == "true"
    # The load balancer reaches nginx (port 80), which proxies to gunicorn on PORT (gunicorn.conf.py binds PORT).
    assert values[("aws:elasticbeanstalk:environment:process:default", "Port")] == "80"
    assert values[("aws:elasticbeanstalk:application:environment", "PORT")] == "8000"
    assert "os.environ.get('PORT', '8000')" in (ROOT / "gunicorn.conf.py").read_text()


def option(settings_list: list[dict], namespace: str, name: str):
    matches = [s["Value"] for s in settings_list if s["Namespace"] == namespace and s["OptionName"] == name]
    assert len(matches) == 1, (namespace, name, matches)
    return matches[0]


def test_the_environment_serves_https_with_the_stacks_certificate_and_a_tls13_policy():
    template = load(ROOT / "infra" / "pipeline.yml")
    found = template_settings(template)
    assert option(found, "aws:elbv2:listener:443", "Protocol") == "HTTPS"
    assert option(found, "aws:elbv2:listener:443", "SSLCertificateArns") == {"Ref": "CertificateArn"}
    assert option(found, "aws:elbv2:listener:443", "SSLPolicy") == {"Ref": "TlsPolicy"}
    assert option(found, "aws:elbv2:listener:443", "DefaultProcess") == "default"
    parameters = template["Parameters"]
    assert "Default" not in parameters["CertificateArn"]  # no certificate, no stack: never a public plain-HTTP site
    assert re.fullmatch(
        parameters["CertificateArn"]["AllowedPattern"],
        "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-0123456789ab",
    )
    assert not re.fullmatch(parameters["CertificateArn"]["AllowedPattern"], "")
    assert parameters["TlsPolicy"]["Default"] in TLS13_POLICIES
    assert set(parameters["TlsPolicy"]["AllowedValues"]) <= TLS13_POLICIES


def test_port_80_is_redirected_to_https_by_the_bundles_nginx_not_by_a_listener_resource():
    """The redirect is a .platform nginx file (which a deploy may carry); the instance test runs it."""
    redirect = (ROOT / ".platform" / "nginx" / "conf.d" / "elasticbeanstalk" / "10-https-redirect.conf").read_text()
    assert 'if ($http_x_forwarded_proto = "http")' in redirect and "return 301 https://$host$request_uri;" in redirect
    for config in configs().values():
        assert "AWSEBV2LoadBalancerListener" not in json.dumps(config)


def test_extension_resources_only_name_resources_beanstalk_documents():
    sign_in = yaml.safe_load((ROOT / "infra" / "sign-in.config").read_text())
    for name, config in [*configs().items(), ("infra/sign-in.config", sign_in)]:
        text = json.dumps(config.get("Resources", {}))
        refs = set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', text))
        assert refs <= EB_RESOURCES, f"{name}: {sorted(refs - EB_RESOURCES)}"
        overridden = {n for n in config.get("Resources", {}) if n.startswith("AWSEB")}
        assert overridden <= EB_RESOURCES, name


def test_sign_in_reads_only_the_custom_options_the_stack_sets_and_is_off_by_default():
    template = load(ROOT / "infra" / "pipeline.yml")
    sign_in = (ROOT / "infra" / "sign-in.config").read_text()
    read = set(re.findall(r"OptionName: (SignIn[A-Za-z]+)", sign_in))
    set_by_stack = {s["OptionName"] for s in template_settings(template) if s["Namespace"] == CUSTOM}
    assert (
        read
        == set_by_stack
        == {
            "SignInIssuer",
            "SignInAuthorizationEndpoint",
            "SignInTokenEndpoint",
            "SignInUserInfoEndpoint",
            "SignInClientId",
            "SignInClientSecret",
        }
    )
    assert template["Parameters"]["SignInIssuer"]["Default"] == ""
    assert template["Parameters"]["SignInClientSecret"]["NoEcho"] is True
    conditional = [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ElasticBeanstalk::Environment"
        for s in r["Properties"]["OptionSettings"]
        if "Fn::If" in s
    ]
    assert len(conditional) == 6 and all(
        s["Fn::If"][0] == "SignIn" and s["Fn::If"][2] == {"Ref": "AWS::NoValue"} for s in conditional
    )
    assert not (ROOT / ".ebextensions" / "04-sign-in.config").exists()  # only the build adds it, when asked
    assert "cp infra/sign-in.config .ebextensions/04-sign-in.config" in (ROOT / "buildspec.yml").read_text()


def test_deploys_are_immutable_with_health_on_ready_and_capacity_is_two_zones_scaling_on_cpu():
    template = load(ROOT / "infra" / "pipeline.yml")
    found = template_settings(template)
    # Immutable; with sign-in (listener rules in the bundle, which an immutable deploy refuses), rolling with an
    # additional batch, which keeps full capacity.
    assert option(found, "aws:elasticbeanstalk:command", "DeploymentPolicy") == {
        "Fn::If": ["SignIn", "RollingWithAdditionalBatch", "Immutable"]
    }
    assert option(found, "aws:elasticbeanstalk:command", "BatchSizeType") == "Fixed"
    assert option(found, "aws:elasticbeanstalk:command", "BatchSize") == "1"
    assert option(found, "aws:autoscaling:updatepolicy:rollingupdate", "RollingUpdateType") == "Immutable"
    assert option(found, "aws:autoscaling:updatepolicy:rollingupdate", "RollingUpdateEnabled") == "true"
    values = {(ns, opt): val for _, ns, opt, val in settings()}
    assert values[("aws:elasticbeanstalk:environment:process:default", "HealthCheckPath")] == "/ready"
    assert values[("aws:elasticbeanstalk:healthreporting:system", "SystemType")] == "enhanced"
    assert option(found, "aws:autoscaling:asg", "MinSize") == {"Ref": "MinInstances"}
    assert option(found, "aws:autoscaling:asg", "MaxSize") == {"Ref": "MaxInstances"}
    assert option(found, "aws:autoscaling:asg", "Availability Zones") == "Any 2"
    parameters = template["Parameters"]
    assert parameters["MinInstances"]["Default"] == parameters["MinInstances"]["MinValue"] == 2
    assert parameters["MaxInstances"]["Default"] >= parameters["MinInstances"]["Default"]
    assert option(found, "aws:autoscaling:trigger", "MeasureName") == "CPUUtilization"
    assert option(found, "aws:autoscaling:trigger", "Unit") == "Percent"
    assert option(found, "aws:autoscaling:trigger", "UpperThreshold") == {"Ref": "ScaleOutCpuPercent"}
    assert option(found, "aws:autoscaling:trigger", "LowerThreshold") == {"Ref": "ScaleInCpuPercent"}
    assert parameters["ScaleOutCpuPercent"]["Default"] > parameters["ScaleInCpuPercent"]["Default"]
    # EC2's basic monitoring has one CPU data point per 5 minutes: the trigger's period matches it.
    assert option(found, "aws:autoscaling:trigger", "Period") == "5"
    assert option(found, "aws:autoscaling:trigger", "BreachDuration") == "5"
    assert option(found, "aws:autoscaling:trigger", "EvaluationPeriods") == "1"


def test_the_platform_is_looked_up_not_pinned_and_kept_current_by_managed_updates():
    template = load(ROOT / "infra" / "pipeline.yml")
    parameter = template["Parameters"]["SolutionStackName"]
    assert "Default" not in parameter and "list-available-solution-stacks" in parameter["Description"]
    pattern = parameter["AllowedPattern"]
    assert re.fullmatch(pattern, "64bit Amazon Linux 2023 v4.9.1 running Python 3.11")
    assert not re.fullmatch(pattern, "64bit Amazon Linux 2 v3.8.0 running Python 3.8")
    found = template_settings(template)
    assert option(found, "aws:elasticbeanstalk:managedactions", "ManagedActionsEnabled") == "true"
    assert option(found, "aws:elasticbeanstalk:managedactions:platformupdate", "UpdateLevel") == "minor"
    assert option(found, "aws:elasticbeanstalk:managedactions:platformupdate", "InstanceRefreshEnabled") == "true"
    policies = json.dumps(template["Resources"]["EbServiceRole"]["Properties"]["ManagedPolicyArns"])
    assert "AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy" in policies


def test_instances_answer_imdsv2_only_and_the_load_balancer_logs_access():
    template = load(ROOT / "infra" / "pipeline.yml")
    found = template_settings(template)
    assert option(found, "aws:autoscaling:launchconfiguration", "DisableIMDSv1") == "true"
    assert option(found, "aws:elbv2:loadbalancer", "AccessLogsS3Enabled") == "true"
    assert option(found, "aws:elbv2:loadbalancer", "AccessLogsS3Bucket") == {"Ref": "LogBucket"}
    rules = template["Resources"]["LogBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rules[0]["ExpirationInDays"] == 90


def test_the_monitoring_token_reaches_the_environment_from_the_stacks_secret():
    template = load(ROOT / "infra" / "pipeline.yml")
    found = template_settings(template)
    assert option(found, "aws:elasticbeanstalk:application:environmentsecrets", "METRICS_TOKEN") == {"Ref": "MetricsToken"}
    secret = template["Resources"]["MetricsToken"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32 and generated["ExcludePunctuation"] is True
    env = {opt: val for _, ns, opt, val in settings() if ns == "aws:elasticbeanstalk:application:environment"}
    assert "METRICS_TOKEN" not in env  # never in clear in git or in the template


def test_api_token_digests_are_a_stack_parameter_checked_as_the_app_checks_them():
    template = load(ROOT / "infra" / "pipeline.yml")
    found = template_settings(template)
    assert option(found, "aws:elasticbeanstalk:application:environment", "API_TOKEN_SHA256") == {"Ref": "ApiTokenSha256"}
    parameter = template["Parameters"]["ApiTokenSha256"]
    assert "Default" not in parameter  # the API is never open by default
    pattern = parameter["AllowedPattern"]
    assert not re.fullmatch(pattern, "")
    from src.config import AppConfig, ConfigError

    for value in ("ab" * 32, f"{'ab' * 32},{'CD' * 32}"):
        assert re.fullmatch(pattern, value)
        AppConfig.from_env({"API_TOKEN_SHA256": value})
    for value in ("ab" * 31, "a-clear-text-token-of-forty-characters-xx", f"{'ab' * 32},"):
        assert not re.fullmatch(pattern, value)
        with pytest.raises(ConfigError):
            AppConfig.from_env({"API_TOKEN_SHA256": value})


def test_one_api_request_carries_at_most_the_stacks_limit_of_students():
    template = load(ROOT / "infra" / "pipeline.yml")
    found = template_settings(template)
    assert option(found, "aws:elasticbeanstalk:application:environment", "MAX_BATCH") == {"Ref": "MaxStudentsPerRequest"}
    parameter = template["Parameters"]["MaxStudentsPerRequest"]
    from src.config import AppConfig

    assert parameter["Default"] == 1000 and parameter["MaxValue"] <= AppConfig().max_batch
    assert AppConfig.from_env({"MAX_BATCH": str(parameter["Default"])}).max_batch == 1000
