"""Every .ebextensions (and template) option must be one AWS documents for Elastic Beanstalk."""

import importlib
import re
from pathlib import Path

import yaml

from tests.deploy.cfn_yaml import load

ROOT = Path(__file__).resolve().parents[2]

# Namespaces and options from the Elastic Beanstalk documentation ("Configuration options": general options
# for all environments, and the Python platform's). Only namespaces this project uses are listed with
# their options; adding a namespace means adding its documented options here.
DOCUMENTED = {
    "aws:elasticbeanstalk:container:python": {"WSGIPath", "NumProcesses", "NumThreads"},
    "aws:elasticbeanstalk:environment:process:default": {
        "DeregistrationDelay", "HealthCheckInterval", "HealthCheckPath", "HealthCheckTimeout",
        "HealthyThresholdCount", "MatcherHTTPCode", "Port", "Protocol", "StickinessEnabled",
        "StickinessLBCookieDuration", "StickinessType", "UnhealthyThresholdCount"},
    "aws:elasticbeanstalk:healthreporting:system": {
        "SystemType", "ConfigDocument", "EnhancedHealthAuthEnabled", "HealthCheckSuccessThreshold"},
    "aws:elasticbeanstalk:cloudwatch:logs": {"StreamLogs", "DeleteOnTerminate", "RetentionInDays"},
    "aws:elasticbeanstalk:cloudwatch:logs:health": {"HealthStreamingEnabled", "DeleteOnTerminate", "RetentionInDays"},
    "aws:autoscaling:launchconfiguration": {
        "DisableIMDSv1", "EC2KeyName", "IamInstanceProfile", "ImageId", "InstanceType", "MonitoringInterval",
        "SecurityGroups", "SSHSourceRestriction", "BlockDeviceMappings", "RootVolumeType", "RootVolumeSize",
        "RootVolumeIOPS", "RootVolumeThroughput"},
    "aws:elasticbeanstalk:environment": {
        "EnvironmentType", "LoadBalancerIsShared", "LoadBalancerType", "ServiceRole",
        "ServiceLinkedRoleForManagedUpdates"},
}
FREE_FORM = {"aws:elasticbeanstalk:application:environment"}  # keys are environment variable names
CONFIG_KEYS = {"option_settings", "packages", "groups", "users", "sources", "files", "commands", "services",
               "container_commands", "Resources", "Outputs"}


def configs() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / ".ebextensions").glob("*.config"))}


def settings():
    for name, config in configs().items():
        for namespace, options in config.get("option_settings", {}).items():
            for option, value in options.items():
                yield name, namespace, option, value
    template = load(ROOT / "infra" / "pipeline.yml")
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::ElasticBeanstalk::Environment":
            for s in resource["Properties"]["OptionSettings"]:
                yield "infra/pipeline.yml", s["Namespace"], s["OptionName"], s["Value"]


def test_config_files_use_only_documented_sections():
    found = configs()
    assert found
    for name, config in found.items():
        assert set(config) <= CONFIG_KEYS, name


def test_every_option_is_documented():
    seen = list(settings())
    assert len(seen) >= 15
    for source, namespace, option, _ in seen:
        if namespace in FREE_FORM:
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", option), f"{source}: {option} is not an environment name"
            continue
        assert namespace in DOCUMENTED, f"{source}: undocumented namespace {namespace}"
        assert option in DOCUMENTED[namespace], f"{source}: {namespace} has no option {option}"


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
    assert values[("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs")] is True
