"""deploy/cloudformation.yaml, read and evaluated the way CloudFormation would.

``load()`` reads the template, short-form tags (``!Ref``, ``!Sub``...) as
their long forms. ``Stack`` evaluates the intrinsic functions the template
uses (Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or,
Fn::FindInMap, and ``Condition: Name`` inside a condition) for given
parameter values, so that a test can read a resource's properties as
CloudFormation would send them to the service. ``AWS::NoValue`` leaves a
property out, and an item of a list (``[!If [C, item, !Ref AWS::NoValue]]``
is ``[item]`` or ``[]``), as CloudFormation does. ``broken_rules`` checks the
template's Rules, which CloudFormation checks before it creates anything.
A reference to another
resource evaluates to ``<LogicalId>`` (``<LogicalId.Attribute>`` for GetAtt):
the physical names do not exist until a real deployment.

An intrinsic function the template does not use raises KeyError here, so a
new one cannot be evaluated wrongly by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "cloudformation.yaml"

# The pseudo parameters the template refers to, as a test deployment would have them.
PSEUDO = {
    "AWS::StackName": "ecs-kv-cache",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
}
NO_VALUE = object()  # AWS::NoValue: the property is left out


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags."""


def _tag(name: str) -> None:
    long_name = name if name == "Ref" else f"Fn::{name}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {long_name: value}

    _Loader.add_constructor(f"!{name}", construct)


for _name in (
    "Ref",
    "GetAtt",
    "Sub",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "Join",
    "Contains",
):
    _tag(_name)


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    # _Loader is a SafeLoader: plain data and the CloudFormation tags only.
    document = yaml.load(path.read_text(), Loader=_Loader)
    assert isinstance(document, dict)
    return document


@dataclass
class Stack:
    """The template with parameter values: defaults, overridden by ``parameters``."""

    template: dict[str, Any] = field(default_factory=load)
    parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.template["Parameters"]
        unknown = set(self.parameters) - set(declared)
        assert not unknown, f"not parameters of the template: {unknown}"
        self.values = {
            name: str(self.parameters.get(name, spec.get("Default", "")))
            for name, spec in declared.items()
        }
        missing = [
            n for n, spec in declared.items() if "Default" not in spec and n not in self.parameters
        ]
        assert not missing, f"required parameters not given: {missing}"

    def condition(self, name: str) -> bool:
        return bool(self.evaluate(self.template["Conditions"][name]))

    def broken_rules(self) -> list[str]:
        """The AssertDescription of every rule assertion that fails for these values."""
        broken = []
        for name, rule in self.template.get("Rules", {}).items():
            assert "RuleCondition" not in rule, f"{name}: RuleCondition is not evaluated here"
            for assertion in rule["Assertions"]:
                if not self.evaluate(assertion["Assert"]):
                    broken.append(str(assertion.get("AssertDescription", name)))
        return broken

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources this stack creates (their Condition holds), properties evaluated."""
        return {
            logical: {**resource, "Properties": self.evaluate(resource.get("Properties", {}))}
            for logical, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def properties(self, logical: str) -> dict[str, Any]:
        properties = self.resources()[logical]["Properties"]
        assert isinstance(properties, dict)
        return properties

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.evaluate(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, argument)] = node.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._function(key, argument)
        evaluated = {key: self.evaluate(value) for key, value in node.items()}
        return {key: value for key, value in evaluated.items() if value is not NO_VALUE}

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self._ref(argument)
        if name == "Condition":
            return self.condition(argument)
        if name == "Fn::GetAtt":
            logical, attribute = argument
            assert logical in self.template["Resources"], logical
            return f"<{logical}.{attribute}>"
        if name == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._sub_name(m.group(1))), argument)
        if name == "Fn::If":
            condition, if_true, if_false = argument
            return self.evaluate(if_true if self.condition(condition) else if_false)
        if name == "Fn::Equals":
            left, right = (str(self.evaluate(side)) for side in argument)
            return left == right
        if name == "Fn::Not":
            return not self.evaluate(argument[0])
        if name == "Fn::And":
            assert 2 <= len(argument) <= 10, "Fn::And takes 2 to 10 conditions"
            return all(bool(self.evaluate(condition)) for condition in argument)
        if name == "Fn::Or":
            assert 2 <= len(argument) <= 10, "Fn::Or takes 2 to 10 conditions"
            return any(bool(self.evaluate(condition)) for condition in argument)
        if name == "Fn::Contains":  # Rules only: a list of strings holds one
            choices, value = argument
            return str(self.evaluate(value)) in [str(choice) for choice in choices]
        if name == "Fn::FindInMap":
            mapping, top, second = (str(self.evaluate(part)) for part in argument)
            return self.template["Mappings"][mapping][top][second]
        raise KeyError(f"{name} is not evaluated by tests/cfn_template.py")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.values:
            return self.values[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        return f"<{name}>"

    def _sub_name(self, name: str) -> Any:
        if "." in name:
            return self._function("Fn::GetAtt", name.split(".", 1))
        return self._ref(name)
