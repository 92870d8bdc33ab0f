"""deploy/cloudformation.yaml: lint-clean, deployable, and what the code expects.

Three kinds of check:
- cfn-lint, with CloudFormation's own resource schemas;
- a deployment on the AWS emulator (moto's CloudFormation, server mode),
  which builds the cluster, roles, security group, task definition and
  service and says CREATE_COMPLETE or why not;
- the template read as data (``tests/cfn_template.py`` evaluates its
  intrinsic functions), because moto drops many ECS properties (health
  check, stop timeout, network mode, deployment configuration) and skips
  the autoscaling resources when it builds a stack.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cfnlint.api
import pytest

from node import config as node_config
from node import ecs_cli, stop_window

from .aws_emulator import AwsEmulator
from .cfn_template import PSEUDO, TEMPLATE, Stack, load

DEPLOY = TEMPLATE.parent
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecs-kv-cache:3f2a9c1"
REQUIRED = {
    "VpcId": "vpc-0a1b2c3d4e5f60718",
    "SubnetIds": "subnet-9ceab8d1,subnet-7f0c0404",
    "Image": IMAGE,
}
CLIENT_GROUP = "sg-0c1d2e3f4a5b6c7d8"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cache-token-AbCdEf"
PEER_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cache-peer-token-GhIjKl"
# Neither secret, the client token's, the peer token's, both.
SECRET_CHOICES = {
    "no-secret": {},
    "auth-secret": {"AuthTokenSecretArn": SECRET},
    "peer-secret": {"PeerTokenSecretArn": PEER_SECRET},
    "both-secrets": {"AuthTokenSecretArn": SECRET, "PeerTokenSecretArn": PEER_SECRET},
}
EVERY_OPTION = {
    "ClientSecurityGroupId": CLIENT_GROUP,
    "AuthTokenSecretArn": SECRET,
    "PeerTokenSecretArn": PEER_SECRET,
    "EnableAutoScaling": "true",
    "TaskCpu": "1024",
    "TaskMemory": "4096",
    "MemcachedPort": "11311",
}


def stack(**parameters: str) -> Stack:
    return Stack(parameters={**REQUIRED, **parameters})


def container(of: Stack) -> dict[str, Any]:
    [definition] = of.properties("TaskDefinition")["ContainerDefinitions"]
    assert isinstance(definition, dict)
    return definition


def environment(of: Stack) -> dict[str, str]:
    return {pair["Name"]: str(pair["Value"]) for pair in container(of)["Environment"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- cfn-lint


def lint(path: Path) -> list[str]:
    """cfn-lint's errors (E) and warnings (W); informational notes (I) are left out."""
    return [
        f"{match.rule.id} line {match.linenumber}: {match.message}"
        for match in cfnlint.api.lint_file(path)
        if match.rule.id[0] in "EW"
    ]


def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    assert lint(TEMPLATE) == []


def test_cfn_lint_catches_a_misspelled_property(tmp_path: Path) -> None:
    # Proves the linter reads our template with real schemas (an empty result
    # above would otherwise prove nothing).
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("MinimumHealthyPercent", "MinimumHealthyPercnt"))

    assert any(finding.startswith("E3002") for finding in lint(broken))


# -- the parameters


def test_only_the_vpc_the_subnets_and_the_image_are_required() -> None:
    parameters = load()["Parameters"]

    assert {name for name, spec in parameters.items() if "Default" not in spec} == {
        "VpcId",
        "SubnetIds",
        "Image",
    }


def test_the_store_gets_half_of_every_task_memory_offered() -> None:
    template = load()
    sizes = template["Parameters"]["TaskMemory"]["AllowedValues"]
    rows = template["Mappings"]["StoreBytes"]

    assert sorted(rows, key=int) == sorted(sizes, key=int)
    for size in sizes:
        # The CLI's rule (node/ecs_cli.py), and a value the node accepts.
        assert rows[size]["MaxBytes"] == f"{int(size) // 2}MiB"
        parsed = node_config.from_sources({}, {"CACHE_MAX_BYTES": rows[size]["MaxBytes"]})
        assert parsed.max_bytes == int(size) // 2 * 1024 * 1024


# -- the task definition


def api_shape(node: Any, *, keep_keys: bool = False) -> Any:
    """CloudFormation's PascalCase properties as the ECS API's camelCase fields.

    Log driver options are free-form names (``awslogs-group``) and keep theirs.
    Numbers written as strings become ints: CloudFormation converts them.
    """
    if isinstance(node, dict):
        return {
            (key if keep_keys else key[0].lower() + key[1:]): api_shape(
                value, keep_keys=key == "Options"
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [api_shape(item) for item in node]
    if isinstance(node, str) and node.isdigit():
        return int(node)
    return node


@pytest.mark.parametrize(
    "options",
    [{}, EVERY_OPTION, SECRET_CHOICES["auth-secret"], SECRET_CHOICES["peer-secret"]],
    ids=["defaults", "every-option", "auth-secret", "peer-secret"],
)
def test_the_task_definition_is_the_one_the_cli_prints(options: dict[str, str]) -> None:
    deployed = stack(**options)
    values = deployed.values
    built = ecs_cli.fargate_task_definition(
        image=IMAGE,
        cluster="<Cluster>",
        service=PSEUDO["AWS::StackName"],
        region=PSEUDO["AWS::Region"],
        execution_role_arn="<ExecutionRole.Arn>",
        task_role_arn="<TaskRole.Arn>",
        family=PSEUDO["AWS::StackName"],
        cpu=int(values["TaskCpu"]),
        memory_mib=int(values["TaskMemory"]),
        log_group="<LogGroup>",
        # The stack creates the log group itself, with a retention.
        create_log_group=False,
        memcached_port=int(values["MemcachedPort"]),
        auth_token_secret_arn=values["AuthTokenSecretArn"] or None,
        # The CLI takes the ARN of the secret the stack makes when none is given.
        peer_token_secret_arn=values["PeerTokenSecretArn"] or _made_peer_secret(deployed),
    )

    assert api_shape(deployed.properties("TaskDefinition")) == api_shape(built)


def test_tasks_are_fargate_awsvpc_with_ports_7000_and_memcached() -> None:
    for deployed, memcached in ((stack(), 11211), (stack(MemcachedPort="11311"), 11311)):
        definition = deployed.properties("TaskDefinition")
        ports = [
            (int(m["ContainerPort"]), int(m["HostPort"]))
            for m in container(deployed)["PortMappings"]
        ]

        assert definition["NetworkMode"] == "awsvpc"
        assert definition["RequiresCompatibilities"] == ["FARGATE"]
        assert ports == [(7000, 7000), (memcached, memcached)]
        assert environment(deployed)["CACHE_PORT"] == "7000"
        assert environment(deployed)["CACHE_MEMCACHED_PORT"] == str(memcached)


def test_nodes_find_each_other_through_this_stacks_service() -> None:
    deployed = stack()
    env = environment(deployed)

    assert env["CACHE_DISCOVERY"] == "ecs"
    assert env["CACHE_ECS_CLUSTER"] == "<Cluster>"
    assert env["CACHE_ECS_SERVICE"] == deployed.properties("Service")["ServiceName"]
    config = node_config.from_sources({}, env)
    assert (config.discovery, config.port) == ("ecs", 7000)


def test_the_health_check_asks_check_alive() -> None:
    check = container(stack())["HealthCheck"]

    assert check["Command"] == ["CMD", "python", "-c", ecs_cli.HEALTH_CHECK_SCRIPT]
    assert "/check-alive" in ecs_cli.HEALTH_CHECK_SCRIPT
    assert int(check["StartPeriod"]) > 0


def test_the_stop_timeout_leaves_the_drain_room_to_finish() -> None:
    deployed = stack()
    stop_timeout = int(container(deployed)["StopTimeout"])
    drain = node_config.from_sources({}, environment(deployed)).drain_timeout

    assert stop_timeout >= 30
    # Handing entries over, then closing connections, before ECS's SIGKILL.
    assert drain + 5 <= stop_timeout


def test_the_open_files_limit_is_above_the_connection_limit() -> None:
    [limit] = container(stack())["Ulimits"]

    assert limit["Name"] == "nofile"
    assert int(limit["SoftLimit"]) > node_config.Config().max_connections


def test_logs_go_to_the_stacks_log_group_with_a_retention() -> None:
    deployed = stack(LogRetentionDays="14")
    options = container(deployed)["LogConfiguration"]["Options"]

    assert options["awslogs-group"] == "<LogGroup>"
    assert "awslogs-create-group" not in options
    assert int(deployed.properties("LogGroup")["RetentionInDays"]) == 14


# -- roles


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def test_the_task_role_may_only_list_and_describe_tasks_of_its_cluster() -> None:
    role = stack(**EVERY_OPTION).properties("TaskRole")
    found = statements(role)

    assert {action for s in found for action in as_list(s["Action"])} == {
        "ecs:ListTasks",
        "ecs:DescribeTasks",
    }
    for statement in found:
        assert statement["Effect"] == "Allow"
        assert statement["Condition"] == {"ArnEquals": {"ecs:cluster": "<Cluster.Arn>"}}
    assert "ManagedPolicyArns" not in role


def test_the_task_role_policy_file_is_the_templates() -> None:
    # deploy/iam-task-role-policy.json is for deployments without the stack.
    document = json.loads((DEPLOY / "iam-task-role-policy.json").read_text())
    [statement] = document["Statement"]
    [in_template] = statements(stack().properties("TaskRole"))

    assert statement["Condition"]["ArnEquals"]["ecs:cluster"].endswith(":cluster/<CLUSTER>")
    statement["Condition"]["ArnEquals"]["ecs:cluster"] = "<Cluster.Arn>"
    assert statement == in_template


def test_only_ecs_tasks_assume_the_roles() -> None:
    for logical in ("TaskRole", "ExecutionRole"):
        [trust] = stack().properties(logical)["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert trust["Action"] == "sts:AssumeRole"


def _made_peer_secret(deployed: Stack) -> str | None:
    """The ``Ref`` of the peer secret the stack makes, when it makes one."""
    return "<PeerTokenSecret>" if "PeerTokenSecret" in deployed.resources() else None


@pytest.mark.parametrize("secrets", SECRET_CHOICES.values(), ids=SECRET_CHOICES.keys())
def test_the_tokens_come_from_the_named_secrets_and_only_those(secrets: dict[str, str]) -> None:
    deployed = stack(**secrets)
    # A client token secret alone: the stack makes the peer token's secret.
    if "PeerTokenSecretArn" not in secrets and "AuthTokenSecretArn" in secrets:
        secrets = {**secrets, "PeerTokenSecretArn": "<PeerTokenSecret>"}
    variables = {"AuthTokenSecretArn": "CACHE_AUTH_TOKEN", "PeerTokenSecretArn": "CACHE_PEER_TOKEN"}
    expected = [
        {"Name": variable, "ValueFrom": secrets[parameter]}
        for parameter, variable in variables.items()
        if parameter in secrets
    ]
    execution_role = deployed.properties("ExecutionRole")

    assert container(deployed).get("Secrets") == (expected or None)
    if expected:
        # One statement: reading exactly the secrets it uses, nothing else.
        assert statements(execution_role) == [
            {
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": list(secrets.values()),
            }
        ]
    else:
        assert "Policies" not in execution_role
    # The tokens never appear in the task definition itself.
    assert not set(variables.values()) & set(environment(deployed))
    for variable in variables.values():
        assert variable in {setting.env for setting in node_config.SETTINGS}


def test_a_client_token_secret_alone_gets_a_random_peer_secret_made_by_the_stack() -> None:
    made = stack(AuthTokenSecretArn=SECRET).properties("PeerTokenSecret")
    assert made["GenerateSecretString"] == {"PasswordLength": 48, "ExcludePunctuation": True}
    # Given one, or no client token at all: the stack makes none.
    for options in ({"AuthTokenSecretArn": SECRET, "PeerTokenSecretArn": PEER_SECRET}, {}):
        assert "PeerTokenSecret" not in stack(**options).resources()


def test_the_peer_token_must_be_another_secret_than_the_client_token() -> None:
    assert stack(**SECRET_CHOICES["both-secrets"]).broken_rules() == []
    assert stack().broken_rules() == []
    assert stack(AuthTokenSecretArn=SECRET, PeerTokenSecretArn=SECRET).broken_rules() == [
        "PeerTokenSecretArn must name another secret than AuthTokenSecretArn: a peer token "
        "every client holds makes every client a node."
    ]


def test_the_memcached_port_must_not_be_the_http_port() -> None:
    assert stack(MemcachedPort="11311").broken_rules() == []
    assert stack(MemcachedPort="7000").broken_rules() == [
        "MemcachedPort must differ from 7000, the HTTP port."
    ]


# -- the security group


def ingress_rules(of: Stack) -> list[dict[str, Any]]:
    """Every ingress rule the stack creates: separate resources and inline ones."""
    resources = of.resources()
    rules = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"
    ]
    for resource in resources.values():
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            rules += resource["Properties"].get("SecurityGroupIngress", [])
    return rules


@pytest.mark.parametrize("options", [{}, EVERY_OPTION], ids=["defaults", "every-option"])
def test_no_ingress_is_open_to_an_address_range(options: dict[str, str]) -> None:
    for rule in ingress_rules(stack(**options)):
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule), rule
        assert rule["SourceSecurityGroupId"] in {"<SecurityGroup>", CLIENT_GROUP}


def test_peers_and_clients_reach_exactly_the_two_cache_ports() -> None:
    def opened(of: Stack) -> set[tuple[str, int, int]]:
        return {
            (r["SourceSecurityGroupId"], int(r["FromPort"]), int(r["ToPort"]))
            for r in ingress_rules(of)
            if r["IpProtocol"] == "tcp"
        }

    peers = {("<SecurityGroup>", 7000, 7000), ("<SecurityGroup>", 11311, 11311)}
    clients = {(CLIENT_GROUP, 7000, 7000), (CLIENT_GROUP, 11311, 11311)}
    assert opened(stack(MemcachedPort="11311")) == peers
    assert (
        opened(stack(MemcachedPort="11311", ClientSecurityGroupId=CLIENT_GROUP)) == peers | clients
    )


# -- the service, the cluster, scaling


def test_the_service_adds_tasks_before_removing_any_and_rolls_back_failures() -> None:
    service = stack().properties("Service")
    deployment = service["DeploymentConfiguration"]

    assert int(service["DesiredCount"]) == 3
    assert (int(deployment["MinimumHealthyPercent"]), int(deployment["MaximumPercent"])) == (
        100,
        200,
    )
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [
        "<SecurityGroup>"
    ]


def test_the_cluster_runs_tasks_on_fargate_capacity_providers() -> None:
    deployed = stack()
    cluster = deployed.properties("Cluster")
    strategy = deployed.properties("Service")["CapacityProviderStrategy"]

    assert "FARGATE" in cluster["CapacityProviders"]
    assert {entry["CapacityProvider"] for entry in strategy} <= set(cluster["CapacityProviders"])


def test_cpu_autoscaling_exists_only_when_enabled() -> None:
    off, on = stack(), stack(EnableAutoScaling="true", AutoScalingTargetCpu="55")
    scaling = {
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
    }

    assert not scaling & {r["Type"] for r in off.resources().values()}
    assert scaling <= {r["Type"] for r in on.resources().values()}
    tracking = on.properties("CpuScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert int(tracking["TargetValue"]) == 55
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization"
    )
    # The scaling target, not the template, owns the count once scaling is on.
    assert "DesiredCount" not in on.properties("Service")


TOPIC = "arn:aws:sns:eu-west-1:123456789012:cache-alarms"


def test_the_alarms_watch_what_the_nodes_write_to_cloudwatch() -> None:
    # The nodes write EMF lines (node/cloudwatch.py) under the default
    # namespace, with the service as a dimension: the alarms must read those.
    for options in ({}, {"EnableAutoScaling": "true", "AutoScalingMinCapacity": "4"}):
        deployed = stack(**options)
        env = environment(deployed)
        assert env["CACHE_CLOUDWATCH_METRICS"] == "true"
        assert "CACHE_CLOUDWATCH_NAMESPACE" not in env  # so the default, below
        namespace = node_config.Config().cloudwatch_namespace
        service = env["CACHE_ECS_SERVICE"]
        for name, metric in (("MembersAlarm", "Members"), ("EvictionsAlarm", "Evictions")):
            alarm = deployed.properties(name)
            assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
            assert alarm["Dimensions"] == [{"Name": "Service", "Value": service}]
            assert "AlarmActions" not in alarm  # no topic given: nobody is notified
        members = deployed.properties("MembersAlarm")
        expected = options.get("AutoScalingMinCapacity", "3")
        assert (str(members["Threshold"]), members["ComparisonOperator"]) == (
            expected,
            "LessThanThreshold",
        )
        assert members["TreatMissingData"] == "breaching"  # no node reports: none runs
        cpu = deployed.properties("CpuAlarm")
        assert (cpu["Namespace"], cpu["MetricName"]) == ("AWS/ECS", "CPUUtilization")
    notified = stack(AlarmTopicArn=TOPIC)
    for name in ("MembersAlarm", "EvictionsAlarm", "CpuAlarm"):
        assert notified.properties(name)["AlarmActions"] == [TOPIC]


def test_the_outputs_name_the_cluster_the_service_and_the_security_group() -> None:
    assert set(load()["Outputs"]) == {"ClusterName", "ServiceName", "SecurityGroupId"}


# -- the evaluator (tests/cfn_template.py) on a template of its own


def test_the_evaluator_drops_novalue_items_from_lists_and_reads_fn_or() -> None:
    template = {
        "Parameters": {"A": {"Type": "String", "Default": ""}, "B": {"Type": "String"}},
        "Conditions": {
            "HasA": {"Fn::Not": [{"Fn::Equals": [{"Ref": "A"}, ""]}]},
            "HasB": {"Fn::Not": [{"Fn::Equals": [{"Ref": "B"}, ""]}]},
            "HasAny": {"Fn::Or": [{"Condition": "HasA"}, {"Condition": "HasB"}]},
        },
        "Resources": {
            "Thing": {
                "Type": "AWS::Test::Thing",
                "Properties": {
                    "Items": [
                        {"Fn::If": ["HasA", {"Ref": "A"}, {"Ref": "AWS::NoValue"}]},
                        "always",
                        {"Fn::If": ["HasB", {"Name": {"Ref": "B"}}, {"Ref": "AWS::NoValue"}]},
                    ],
                    "Maybe": {"Fn::If": ["HasAny", "some", {"Ref": "AWS::NoValue"}]},
                },
            }
        },
    }

    def thing(a: str, b: str) -> dict[str, Any]:
        return Stack(template=template, parameters={"A": a, "B": b}).properties("Thing")

    assert thing("", "") == {"Items": ["always"]}
    assert thing("a", "") == {"Items": ["a", "always"], "Maybe": "some"}
    assert thing("", "b") == {"Items": ["always", {"Name": "b"}], "Maybe": "some"}
    assert thing("a", "b") == {"Items": ["a", "always", {"Name": "b"}], "Maybe": "some"}


def test_the_evaluator_refuses_a_function_it_does_not_know() -> None:
    template = {
        "Parameters": {},
        "Resources": {
            "Thing": {"Type": "AWS::Test::Thing", "Properties": {"X": {"Fn::Base64": "x"}}}
        },
    }

    with pytest.raises(KeyError, match="Fn::Base64"):
        Stack(template=template).properties("Thing")


# -- deployed on the emulator


def deploy(emulator: AwsEmulator, name: str, parameters: dict[str, str]) -> dict[str, Any]:
    """create_stack on moto; the stack's description once it left CREATE_IN_PROGRESS."""
    cloudformation = emulator.boto3_client("cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [description] = cloudformation.describe_stacks(StackName=name)["Stacks"]
        if description["StackStatus"] != "CREATE_IN_PROGRESS":
            return dict(description)
        time.sleep(0.1)
    raise AssertionError(f"{name} still CREATE_IN_PROGRESS after 30 s")


# moto builds no autoscaling resources and no alarms (they are checked in the
# template above).
# (A colon would end the message pattern: "." stands for each.)
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..ApplicationAutoScaling")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm")
@pytest.mark.parametrize("every_option", [False, True], ids=["defaults", "every-option"])
def test_the_stack_deploys_on_the_emulator(emulator: AwsEmulator, every_option: bool) -> None:
    network = emulator.create_network()
    parameters = {
        "VpcId": network.vpc,
        "SubnetIds": ",".join(network.subnets),
        "Image": IMAGE,
    }
    if every_option:
        parameters |= {**EVERY_OPTION, "ClientSecurityGroupId": network.security_group}

    description = deploy(emulator, "ecs-kv-cache", parameters)

    assert description["StackStatus"] == "CREATE_COMPLETE", description.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description["Outputs"]}
    ecs = emulator.boto3_client("ecs")
    [service] = ecs.describe_services(
        cluster=outputs["ClusterName"], services=[outputs["ServiceName"]]
    )["services"]
    assert service["status"] == "ACTIVE"
    if not every_option:
        assert service["desiredCount"] == 3
    [group] = emulator.boto3_client("ec2").describe_security_groups(
        GroupIds=[outputs["SecurityGroupId"]]
    )["SecurityGroups"]
    sources = {network.security_group} if every_option else set()
    for permission in group["IpPermissions"]:
        assert permission["IpRanges"] == [] and permission["Ipv6Ranges"] == []
        groups = {pair["GroupId"] for pair in permission["UserIdGroupPairs"]}
        assert groups == {outputs["SecurityGroupId"], *sources}
    memcached = int(parameters.get("MemcachedPort", "11211"))
    assert sorted(p["FromPort"] for p in group["IpPermissions"]) == [7000, memcached]


# moto builds no Secrets Manager secret from a template either: what the
# stack makes is checked in the template above; here, that it deploys.
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..ApplicationAutoScaling")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm")
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..SecretsManager..Secret")
def test_a_stack_given_a_client_token_alone_deploys_on_the_emulator(
    emulator: AwsEmulator,
) -> None:
    network = emulator.create_network()
    parameters = {
        "VpcId": network.vpc,
        "SubnetIds": ",".join(network.subnets),
        "Image": IMAGE,
        "AuthTokenSecretArn": SECRET,
    }
    description = deploy(emulator, "ecs-kv-cache-secured", parameters)

    assert description["StackStatus"] == "CREATE_COMPLETE", description.get("StackStatusReason")


# -- the stop window


def test_every_task_size_fargate_runs_gets_the_stop_window_its_full_store_needs_or_a_refusal() -> (
    None
):
    sizes = load()["Parameters"]
    for cpu in sizes["TaskCpu"]["AllowedValues"]:
        for memory in sizes["TaskMemory"]["AllowedValues"]:
            deployed = stack(TaskCpu=cpu, TaskMemory=memory)
            try:
                runs = int(memory) in stop_window.FARGATE_SIZES[int(cpu)]
                window = stop_window.window(int(cpu), int(memory)) if runs else None
            except stop_window.TooBigForStopWindow:
                window = None
            if window is None:
                [refusal] = deployed.broken_rules()
                assert refusal.startswith(f"TaskMemory {memory} needs TaskCpu "), refusal
                assert cpu not in refusal.split("needs")[1]
                continue
            assert deployed.broken_rules() == [], (cpu, memory)
            drain = node_config.from_sources({}, environment(deployed)).drain_timeout
            assert (drain, int(container(deployed)["StopTimeout"])) == (
                window.drain_seconds,
                window.stop_seconds,
            )
            assert window.stop_seconds <= 120
