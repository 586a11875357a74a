"""infra/pipeline.yml: cfn-lint clean, least-privilege IAM, and its S3 and IAM part deployed into moto."""

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.cfn_yaml import load
from tests.deploy.moto_parts import create_secret

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "pipeline.yml"

# Actions AWS documents as not supporting resource-level permissions: "*" is the only resource they take.
STAR_RESOURCE_ONLY = {
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
}


CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-0123456789ab"


@pytest.fixture(scope="module")
def template():
    return load(TEMPLATE)


def allow_statements(template):
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in conditional_items(document["Statement"]):
                if statement["Effect"] == "Allow":
                    yield name, statement


def conditional_items(items):
    """A list's items with each Fn::If item replaced by both of its branches (AWS::NoValue dropped): a statement
    present under one condition is checked like the others."""
    for item in items:
        if isinstance(item, dict) and set(item) == {"Fn::If"}:
            yield from (b for b in item["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
        else:
            yield item


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_cfn_lint_is_clean():
    result = subprocess.run(
        [shutil.which("cfn-lint") or "cfn-lint", str(TEMPLATE)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_parameters_for_repository_branch_and_instance_type(template):
    assert {"RepositoryId", "BranchName", "InstanceType"} <= template["Parameters"].keys()
    assert template["Parameters"]["InstanceType"]["Default"] == "t3.small"
    assert "Python 3\\.11" in template["Parameters"]["SolutionStackName"]["AllowedPattern"]


# CodePipeline's "Elastic Beanstalk deploy action reference": the minimum permissions of the pipeline's role,
# copied from the page with its address (the deploy action's service-wide actions, meant to be scoped).
DEPLOY_ACTION = json.loads((Path(__file__).parent / "data" / "eb-deploy-action.json").read_text())
DOCUMENTED_DEPLOY_ACTIONS = DEPLOY_ACTION["statement"]["Action"]
# EC2 resources of a deploy (instances, security group, launch template) do not exist before the deploy and
# carry generated ids; Describe-like calls take no resource. These may be granted on "*", in the stack's region.
REGION_ONLY = {
    "ec2:*",
    "autoscaling:Describe*",
    "elasticloadbalancing:Describe*",
    "cloudwatch:Describe*",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "cloudformation:ValidateTemplate",
    "cloudformation:DescribeStacks",
    "sns:ListTopics",
    "elasticbeanstalk:CreateStorageLocation",
    "elasticbeanstalk:ListPlatformVersions",
    "elasticbeanstalk:ListAvailableSolutionStacks",
    "s3:ListAllMyBuckets",
}
IN_THIS_REGION = {"StringEquals": {"aws:RequestedRegion": {"Ref": "AWS::Region"}}}


def test_no_wildcard_actions_or_needless_wildcard_resources(template):
    """Service-wide actions only where the deploy action's documentation lists them, on the pipeline's role."""
    statements = list(allow_statements(template))
    assert len(statements) >= 10
    for role, statement in statements:
        for action in as_list(statement["Action"]):
            assert action != "*", f"{role}: wildcard action {action}"
            if action.endswith(":*"):
                assert role == "PipelineRole" and action in DOCUMENTED_DEPLOY_ACTIONS, f"{role}: {action}"
        resources = as_list(statement["Resource"])
        if "*" in resources:
            broad = set(as_list(statement["Action"])) - STAR_RESOURCE_ONLY
            if broad:
                assert role == "PipelineRole" and broad <= REGION_ONLY, f"{role}: {sorted(broad)} on *"
                assert statement["Condition"] == IN_THIS_REGION, f"{role}: {statement['Sid']} in every region"


def _covers(granted: str, wanted: str) -> bool:
    return granted == wanted or (granted.endswith("*") and wanted.startswith(granted[:-1]))


def test_the_pipeline_role_has_the_deploy_actions_documented_minimum_scoped_to_this_environment(template):
    """Every service-wide action of the documented minimum is granted, on this environment's resources: the
    names Elastic Beanstalk gives them (awseb-..., the application and environment of the stack)."""
    assert DEPLOY_ACTION["source"].endswith("/codepipeline/latest/userguide/action-reference-Beanstalk.html")
    statements = [s for role, s in allow_statements(template) if role == "PipelineRole"]
    for wanted in DOCUMENTED_DEPLOY_ACTIONS:
        granting = [s for s in statements if any(_covers(a, wanted) for a in as_list(s["Action"]))]
        assert granting, f"the pipeline role lacks {wanted}"
        for statement in granting:
            resources = as_list(statement["Resource"])
            if resources == ["*"]:
                assert wanted in REGION_ONLY and statement["Condition"] == IN_THIS_REGION, (wanted, statement["Sid"])
                continue
            for resource in resources:
                text = json.dumps(resource)
                assert "${AWS::AccountId}" in text or "::platform/" in text or "::solutionstack/" in text, text
                assert "awseb" in text or "${ApplicationName}" in text or "elasticbeanstalk" in text.lower(), text
    # The roles it passes are the environment's own two, nothing else.
    [passing] = [s for s in statements if s["Action"] == ["iam:PassRole"]]
    assert passing["Resource"] == [{"Fn::GetAtt": ["EbInstanceRole", "Arn"]}, {"Fn::GetAtt": ["EbServiceRole", "Arn"]}]
    # The deploy cannot reach another application's environment or the model store.
    beanstalk = next(s for s in statements if s["Sid"] == "DeployBeanstalk")
    assert all("${ApplicationName}" in json.dumps(r) or "::" in json.dumps(r) for r in beanstalk["Resource"])
    assert "ModelBucket" not in json.dumps(statements)


def test_buckets_are_encrypted_versioned_and_private(template):
    buckets = {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
    assert set(buckets) == {"ArtifactBucket", "ModelBucket", "LogBucket"}
    for props in buckets.values():
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        assert all(props["PublicAccessBlockConfiguration"].values())


def test_pipeline_is_source_build_deploy(template):
    stages = template["Resources"]["Pipeline"]["Properties"]["Stages"]
    providers = [s["Actions"][0]["ActionTypeId"]["Provider"] for s in stages]
    assert providers == ["CodeStarSourceConnection", "CodeBuild", "ElasticBeanstalk"]


def test_s3_and_iam_part_deploys_into_moto(template):
    import boto3
    from moto import mock_aws

    part = {n: r for n, r in template["Resources"].items() if r["Type"].startswith(("AWS::S3::", "AWS::IAM::"))}
    # moto's CloudFormation has no AWS::S3::BucketPolicy: those go through the S3 API after the stack; nor
    # AWS::SecretsManager::Secret: the secret is made first through its API, and given to the stack by its ARN.
    policies = {n: r for n, r in part.items() if r["Type"] == "AWS::S3::BucketPolicy"}
    keep = {n: r for n, r in part.items() if n not in policies}
    secret = template["Resources"]["MetricsToken"]["Properties"]
    secret = {**secret, "Name": secret["Name"]["Fn::Sub"].replace("${ApplicationName}", "student-math")}
    # References to resources outside this part (the connection, the retraining project) become parameters.
    keep = json.loads(json.dumps(keep).replace('{"Fn::GetAtt": ["RetrainProject", "Arn"]}', '{"Ref": "RetrainProjectArn"}'))
    body = json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Mappings": template["Mappings"],
            "Conditions": template["Conditions"],
            "Parameters": {
                **template["Parameters"],
                "GitHubConnection": {"Type": "String"},
                "RetrainProjectArn": {"Type": "String"},
                "MetricsToken": {"Type": "String"},
            },
            "Resources": keep,
        }
    )
    with mock_aws():
        secret_arn = create_secret(boto3.client("secretsmanager", region_name="us-east-1"), secret)
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        cfn.create_stack(
            StackName="student-math",
            TemplateBody=body,
            Capabilities=["CAPABILITY_IAM"],
            Parameters=[
                {"ParameterKey": "RepositoryId", "ParameterValue": "org/repo"},
                {"ParameterKey": "MetricsToken", "ParameterValue": secret_arn},
                {"ParameterKey": "DomainName", "ParameterValue": "scores.example.org"},
                {"ParameterKey": "CertificateArn", "ParameterValue": CERTIFICATE},
                {
                    "ParameterKey": "SolutionStackName",
                    "ParameterValue": "64bit Amazon Linux 2023 v4.9.1 running Python 3.11",
                },
                {"ParameterKey": "ApiTokenSha256", "ParameterValue": "ab" * 32},
                {"ParameterKey": "AlarmEmail", "ParameterValue": "it@example-district.org"},
                {"ParameterKey": "Tracking", "ParameterValue": "managed"},  # the tracking roles exist then
                {
                    "ParameterKey": "RetrainProjectArn",
                    "ParameterValue": "arn:aws:codebuild:us-east-1:123456789012:project/student-math-retrain",
                },
                {
                    "ParameterKey": "GitHubConnection",
                    "ParameterValue": "arn:aws:codestar-connections:us-east-1:123456789012:connection/abc",
                },
            ],
        )
        stack = cfn.describe_stacks(StackName="student-math")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        created = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName="student-math")["StackResourceSummaries"]
        }
        assert set(keep) <= created.keys()
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("ArtifactBucket", "ModelBucket"):
            s3.head_bucket(Bucket=created[bucket])  # moto creates the buckets but ignores their versioning and
            # encryption properties: those are checked on the template in test_buckets_are_encrypted_...
        for policy_resource in policies.values():
            bucket = created[policy_resource["Properties"]["Bucket"]["Ref"]]
            document = resolve_bucket_arns(policy_resource["Properties"]["PolicyDocument"], created)
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))
            assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]["Effect"] == "Deny"
        iam = boto3.client("iam", region_name="us-east-1")
        role = created["CodeBuildRole"]
        policy = iam.get_role_policy(RoleName=role, PolicyName="build")["PolicyDocument"]
        if isinstance(policy, str):  # moto keeps the template's document as Python text
            policy = ast.literal_eval(policy)
        publish = next(st for st in policy["Statement"] if st["Sid"] == "PublishModels")
        assert publish["Resource"] == f"arn:aws:s3:::{created['ModelBucket']}/models/*"
        for training_role in ("CodeBuildRole", "RetrainRole"):  # the tracking client's policy, on both
            assert "tracking-client" in iam.list_role_policies(RoleName=created[training_role])["PolicyNames"]
        profiles = iam.list_instance_profiles()["InstanceProfiles"]
        assert [r["RoleName"] for p in profiles for r in p["Roles"]] == [created["EbInstanceRole"]]
        instance = iam.get_role_policy(RoleName=created["EbInstanceRole"], PolicyName="instance")["PolicyDocument"]
        if isinstance(instance, str):
            instance = ast.literal_eval(instance)
        read = next(st for st in instance["Statement"] if st["Sid"] == "ReadMetricsToken")
        assert read["Resource"] == secret_arn and read["Action"] == ["secretsmanager:GetSecretValue"]
        assert (
            boto3.client("secretsmanager", region_name="us-east-1").describe_secret(SecretId=secret_arn)["Name"]
            == "student-math/metrics-token"
        )


def test_new_data_and_a_schedule_start_the_retraining_build(template):
    resources = template["Resources"]
    project = resources["RetrainProject"]["Properties"]
    spec = yaml.safe_load(project["Source"]["BuildSpec"])
    command = " ".join(spec["phases"]["build"]["commands"])
    assert "src.pipeline.retrain" in command and '--store "$MODEL_URI"' in command and "--prometheus-url" in command
    rules = {
        n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::Events::Rule" and n.startswith("Retrain")
    }
    assert set(rules) == {"RetrainOnSchedule", "RetrainOnNewData"}
    assert rules["RetrainOnSchedule"]["ScheduleExpression"] == {"Ref": "RetrainSchedule"}
    pattern = rules["RetrainOnNewData"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "data/"}]
    assert resources["ModelBucket"]["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }
    for rule in rules.values():
        assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["RetrainProject", "Arn"]}
        assert rule["Targets"][0]["RoleArn"] == {"Fn::GetAtt": ["RetrainEventsRole", "Arn"]}
    start = resources["RetrainEventsRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert start == [
        {
            "Sid": "StartRetrain",
            "Effect": "Allow",
            "Action": ["codebuild:StartBuild"],
            "Resource": {"Fn::GetAtt": ["RetrainProject", "Arn"]},
        }
    ]


def test_web_instances_read_only_the_model_store_never_the_training_data(template):
    statements = template["Resources"]["EbInstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    s3 = [st for st in statements if any(a.startswith("s3:") for a in as_list(st["Action"]))]
    resources = json.dumps([st["Resource"] for st in s3])
    assert "/models/*" in resources and "TrainingDataKey" not in resources and "data/" not in resources


def test_only_the_web_instances_and_the_retraining_build_read_the_monitoring_token(template):
    readers = {}
    for role, statement in allow_statements(template):
        actions = as_list(statement["Action"])
        if any(a.startswith("secretsmanager:") for a in actions):
            assert actions == ["secretsmanager:GetSecretValue"], role
            assert statement["Resource"] == {"Ref": "MetricsToken"}, role
            readers[role] = statement["Sid"]
    assert readers == {"EbInstanceRole": "ReadMetricsToken", "RetrainRole": "ReadMetricsToken"}
    retrain_env = {
        v["Name"]: v for v in template["Resources"]["RetrainProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    }
    assert retrain_env["METRICS_TOKEN"] == {
        "Name": "METRICS_TOKEN",
        "Type": "SECRETS_MANAGER",
        "Value": {"Ref": "MetricsToken"},
    }
    assert retrain_env["PROMETHEUS_URL"]["Value"] == {"Ref": "PrometheusUrl"}  # the fleet, not one instance


def test_a_stack_without_a_certificate_is_refused_and_sign_in_must_be_complete(template):
    assert "Default" not in template["Parameters"]["CertificateArn"]
    assert "Default" not in template["Parameters"]["DomainName"]
    rule = template["Rules"]["SignInIsComplete"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SignInIssuer"}, ""]}]}
    checked = json.dumps(rule["Assertions"])
    for name in (
        "SignInAuthorizationEndpoint",
        "SignInTokenEndpoint",
        "SignInUserInfoEndpoint",
        "SignInClientId",
        "SignInClientSecret",
    ):
        assert f'{{"Ref": "{name}"}}' in checked
    # the load balancer passes bearer callers to the app, which checks their tokens: the digests are required
    assert "Default" not in template["Parameters"]["ApiTokenSha256"]


def resolve_bucket_arns(node, created):
    """Resolve the two forms the bucket policies use: GetAtt Bucket.Arn and Sub "${Bucket.Arn}/*"."""
    if isinstance(node, dict):
        if "Fn::GetAtt" in node:
            return f"arn:aws:s3:::{created[node['Fn::GetAtt'][0]]}"
        if "Fn::Sub" in node:
            text = node["Fn::Sub"]
            for name, physical in created.items():
                text = text.replace("${" + name + ".Arn}", f"arn:aws:s3:::{physical}")
            return text
        return {k: resolve_bucket_arns(v, created) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_bucket_arns(v, created) for v in node]
    return node


TRACKING_SERVER_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
    "mlflow-tracking-server/${ApplicationName}-mlflow"
}


def test_the_tracking_server_keeps_its_artifacts_in_the_model_bucket_under_their_own_prefix(template):
    resources = template["Resources"]
    server = resources["TrackingServer"]
    assert server["Type"] == "AWS::SageMaker::MlflowTrackingServer"
    props = server["Properties"]
    assert props["ArtifactStoreUri"] == {"Fn::Sub": "s3://${ModelBucket}/mlflow"}
    assert props["TrackingServerName"] == {"Fn::Sub": "${ApplicationName}-mlflow"}  # the name the ARNs below use
    assert props["RoleArn"] == {"Fn::GetAtt": ["TrackingServerRole", "Arn"]}
    assert props["AutomaticModelRegistration"] is False  # no SageMaker model packages beside the registry
    assert props["TrackingServerSize"] == {"Ref": "TrackingServerSize"}
    assert template["Parameters"]["TrackingServerSize"]["Default"] == "Small"
    role = resources["TrackingServerRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    for statement in statements:  # the server reaches its own prefix, never the model store or the data
        text = json.dumps(statement["Resource"])
        assert (
            "/mlflow/*" in text
            or statement.get("Condition") == {"StringLike": {"s3:prefix": ["mlflow/*"]}}
            or statement["Action"] == ["s3:GetBucketLocation"]
        ), statement
        assert "models/" not in text and "data/" not in text and "TrainingDataKey" not in text


def test_tracking_is_a_stack_choice_none_existing_or_managed_with_the_paired_client(template):
    """none (the default), an existing server's URI, or the managed server, whose resources exist only then."""
    resources = template["Resources"]
    parameter = template["Parameters"]["Tracking"]
    assert parameter["AllowedValues"] == ["none", "existing", "managed"] and parameter["Default"] == "none"
    for name in ("TrackingServer", "TrackingServerRole", "TrackingClientPolicy"):
        assert resources[name]["Condition"] == "ManagedTracking", name
    uri = {
        "Fn::If": [
            "ManagedTracking",
            {"Fn::GetAtt": ["TrackingServer", "TrackingServerArn"]},
            {"Fn::If": ["ExistingTracking", {"Ref": "TrackingUri"}, ""]},
        ]
    }
    client = {
        "Fn::If": [
            "ManagedTracking",
            {"Fn::FindInMap": ["MlflowClientOfServer", {"Ref": "TrackingMlflowVersion"}, "Client"]},
            "",
        ]
    }
    for project in ("CodeBuildProject", "RetrainProject"):
        variables = {v["Name"]: v["Value"] for v in resources[project]["Properties"]["Environment"]["EnvironmentVariables"]}
        assert variables["TRACKING"] == {"Ref": "Tracking"}, project
        assert variables["MLFLOW_TRACKING_URI"] == uri, project
        assert variables["MLFLOW_CLIENT_VERSION"] == client, project
    # SageMaker's pairs, "Integrate MLflow with your environment"; every version offered has its client.
    pairs = {v: c["Client"] for v, c in template["Mappings"]["MlflowClientOfServer"].items()}
    assert pairs == {"2.13": "2.13.2", "2.16": "2.16.2", "3.0": "3.0.0"}
    assert set(template["Parameters"]["TrackingMlflowVersion"]["AllowedValues"]) == set(pairs)
    rule = template["Rules"]["ExistingTrackingHasAnAddress"]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "TrackingUri"}, ""]}]} == rule["Assertions"][0]["Assert"]
    spec = yaml.safe_load(resources["RetrainProject"]["Properties"]["Source"]["BuildSpec"])
    [command] = spec["phases"]["build"]["commands"]
    assert '--tracking-uri "${MLFLOW_TRACKING_URI:?' in command and "then set -- --no-tracking" in command
    install = " ".join(spec["phases"]["install"]["commands"])
    assert "-r requirements-tracking.txt" in install and '"mlflow==$MLFLOW_CLIENT_VERSION"' in install
    pins = (ROOT / "requirements-tracking.txt").read_text().split()
    assert "-r" in pins and "requirements-train.txt" in pins and any(p.startswith("sagemaker-mlflow==") for p in pins)


def test_the_training_roles_may_track_on_their_server_only_and_write_only_its_prefix(template):
    resources = template["Resources"]
    policy = resources["TrackingClientPolicy"]
    assert policy["Type"] == "AWS::IAM::Policy"
    assert policy["Properties"]["Roles"] == [{"Ref": "CodeBuildRole"}, {"Ref": "RetrainRole"}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    mlflow_actions = [a for st in statements for a in as_list(st["Action"]) if a.startswith("sagemaker-mlflow:")]
    assert mlflow_actions and "sagemaker-mlflow:AccessUI" not in mlflow_actions  # the UI is for people
    assert not [a for a in mlflow_actions if a.split(":")[1].startswith(("Delete", "Rename", "Restore"))]
    for statement in statements:
        actions = as_list(statement["Action"])
        if any(a.startswith("sagemaker") for a in actions):
            assert statement["Resource"] == TRACKING_SERVER_ARN, statement["Sid"]
            assert {a.split(":")[0] for a in actions} <= {"sagemaker-mlflow", "sagemaker"}
            assert [a for a in actions if a.startswith("sagemaker:")] in ([], ["sagemaker:DescribeMlflowTrackingServer"])
        else:
            assert set(actions) <= {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}, statement["Sid"]
            assert statement["Resource"] == {"Fn::Sub": "${ModelBucket.Arn}/mlflow/*"} or statement["Condition"] == {
                "StringLike": {"s3:prefix": ["mlflow/*"]}
            }, statement["Sid"]
    # The web instances reach no part of it: serving never needs MLflow.
    instance = json.dumps(resources["EbInstanceRole"]["Properties"])
    assert "mlflow" not in instance and "sagemaker" not in instance


def test_alarms_reach_one_topic_for_5xx_response_time_unhealthy_instances_health_and_failed_builds(template):
    resources = template["Resources"]
    topic = resources["AlarmTopic"]["Properties"]
    assert topic["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}]
    alarms = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    def metrics(props):
        if "MetricName" in props:
            return {(props["Namespace"], props["MetricName"])}
        return {
            (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
            for m in props["Metrics"]
            if "MetricStat" in m
        }

    watched = {name: metrics(props) for name, props in alarms.items()}
    eb = "AWS/ElasticBeanstalk"
    assert watched["ServerErrorsAlarm"] == {(eb, "ApplicationRequests5xx"), (eb, "ApplicationRequestsTotal")}
    assert watched["ResponseTimeAlarm"] == {(eb, "ApplicationLatencyP95")}
    assert watched["UnhealthyInstancesAlarm"] == {(eb, "InstancesDegraded"), (eb, "InstancesSevere")}
    assert watched["EnvironmentHealthAlarm"] == {(eb, "EnvironmentHealth")}
    assert watched["FailedBuildsAlarm"] == watched["FailedRetrainingAlarm"] == {("AWS/CodeBuild", "FailedBuilds")}
    for name, props in alarms.items():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    # Every environment metric an alarm reads is one the environment publishes (enhanced health's ConfigDocument).
    [config] = [
        s["Value"]
        for s in resources["EbEnvironment"]["Properties"]["OptionSettings"]
        if isinstance(s, dict) and s.get("OptionName") == "ConfigDocument"
    ]
    published = json.loads(config)["CloudWatchMetrics"]["Environment"]
    assert {m for names in watched.values() for ns, m in names if ns == eb} <= set(published)
    failed = resources["PipelineFailed"]["Properties"]
    assert failed["EventPattern"]["detail"] == {"state": ["FAILED"]}
    assert failed["Targets"] == [{"Id": "alarm-topic", "Arn": {"Ref": "AlarmTopic"}}]
    policy = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Principal"] == {"Service": "events.amazonaws.com"}


def test_build_logs_expire_and_old_application_versions_are_deleted(template):
    resources = template["Resources"]
    for project, group in (("CodeBuildProject", "BuildLogGroup"), ("RetrainProject", "RetrainLogGroup")):
        logs = resources[project]["Properties"]["LogsConfig"]["CloudWatchLogs"]
        assert logs["GroupName"] == {"Ref": group}
        assert resources[group]["Properties"]["RetentionInDays"] <= 365
    lifecycle = resources["EbApplication"]["Properties"]["ResourceLifecycleConfig"]["VersionLifecycleConfig"]
    assert lifecycle["MaxCountRule"]["Enabled"] is True and lifecycle["MaxCountRule"]["DeleteSourceFromS3"] is True


def test_the_retraining_build_runs_in_the_vpc_where_prometheus_answers(template):
    """Prometheus answers only inside the VPC: with a VPC given, the build runs there with the query client's group,
    its role may make the build's network interface, and the stack refuses a Prometheus address without a VPC."""
    project = template["Resources"]["RetrainProject"]["Properties"]
    assert project["VpcConfig"]["Fn::If"][0] == "RetrainInVpc"
    vpc = project["VpcConfig"]["Fn::If"][1]
    assert vpc == {
        "VpcId": {"Ref": "RetrainVpcId"},
        "Subnets": {"Ref": "RetrainSubnetIds"},
        "SecurityGroupIds": [{"Ref": "RetrainSecurityGroupId"}],
    }
    assert project["VpcConfig"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    statements = template["Resources"]["RetrainRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    in_vpc = [s["Fn::If"][1] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "RetrainInVpc"]
    actions = {a for s in in_vpc for a in s["Action"]}
    assert {"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:CreateNetworkInterfacePermission"} <= actions
    permission = next(s for s in in_vpc if s["Action"] == ["ec2:CreateNetworkInterfacePermission"])
    assert permission["Condition"] == {"StringEquals": {"ec2:AuthorizedService": "codebuild.amazonaws.com"}}
    rule = template["Rules"]["PrometheusIsReachedFromTheVpc"]
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "PrometheusUrl"}, ""]}]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RetrainVpcId"}, ""]}]}
