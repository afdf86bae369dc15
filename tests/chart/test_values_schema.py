"""Acceptance 3: values.schema.json rejects unknown keys and wrong types, through Helm's own validation, with a
message that names the offending key."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.chart.chart import CHART, VALUE_SETS


def schema_error(values: dict[str, Any]) -> str:
    """Helm's message for values the schema rejects (fails the test if they are accepted)."""
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(values)
    return str(caught.value)


def test_defaults_and_value_sets_pass() -> None:
    """values.yaml and every value set the tests render are valid."""
    with helm.Chart.load(CHART) as chart:
        for values in VALUE_SETS.values():
            chart.validate_schema(values)


def test_every_object_is_closed() -> None:
    """Every object in the schema that lists properties forbids others (additionalProperties: false)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path or "<root>")
            for key, child in node.get("properties", {}).items():
                walk(child, f"{path}.{key}" if path else key)

    walk(schema, "")
    assert not open_objects


def test_every_value_is_documented() -> None:
    """Every key in values.yaml is typed and described in the schema, and every value has a comment above it
    (sections are exempt, and so are the insides of Kubernetes objects such as resources)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    undocumented = []

    def walk(node: yaml.MappingNode, props: dict[str, Any], path: str) -> None:
        for key_node, value_node in node.value:
            key = f"{path}{key_node.value}"
            assert key_node.value in props, f"{key} is not in values.schema.json"
            sub = props[key_node.value]
            assert sub.get("description"), f"{key} has no description in values.schema.json"
            section = isinstance(value_node, yaml.MappingNode) and "properties" in sub
            if section and "(a Kubernetes" not in sub["description"]:
                walk(value_node, sub["properties"], f"{key}.")
            elif not lines[key_node.start_mark.line - 1].lstrip().startswith("#"):
                undocumented.append(key)

    walk(yaml.compose(text), schema["properties"], "")
    assert not undocumented, f"values without a comment: {undocumented}"


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"gateway": {"replica": {"min": 1}}}, "replica"),
        ({"redis": {"externalUrl": "redis://x"}}, "externalUrl"),
        ({"operator": {"image": {"tags": "1.0"}}}, "tags"),
        ({"serviceMonitor": {"enabled": True, "namespace": "x"}}, "namespace"),
        ({"unknownTopLevel": True}, "unknownTopLevel"),
    ],
)
def test_unknown_keys_are_rejected(values: dict[str, Any], names: str) -> None:
    """A misspelt or invented key fails validation, and the message names it."""
    message = schema_error(values)
    assert names in message
    assert "additional properties" in message.lower() or "additionalproperties" in message.lower()


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"gateway": {"replicas": {"min": "two", "max": 10}}}, "min"),
        ({"crds": {"enabled": "yes"}}, "enabled"),
        ({"operator": {"watchNamespaces": "realtime"}}, "watchNamespaces"),
        ({"redis": {"persistence": {"size": 8}}}, "size"),
        ({"otel": {"sampleRatio": 2}}, "sampleRatio"),
        ({"redis": {"appendfsync": "sometimes"}}, "appendfsync"),
        ({"gateway": {"image": {"digest": "latest"}}}, "digest"),
    ],
)
def test_wrong_types_are_rejected(values: dict[str, Any], where: str) -> None:
    """A value of the wrong type or out of range fails validation, and the message says where."""
    assert where in schema_error(values)


def test_render_refuses_invalid_values() -> None:
    """Rendering (what `helm install` does) applies the schema too, not only an explicit validation."""
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match="replica"):
        chart.render({"gateway": {"replica": {"min": 1}}}, name="fleetcast", namespace="realtime")


def test_schema_is_valid_json_schema() -> None:
    """The schema itself is a valid draft 2020-12 document."""
    jsonschema.Draft202012Validator.check_schema(json.loads((CHART / "values.schema.json").read_text()))
