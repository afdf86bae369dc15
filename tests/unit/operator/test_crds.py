"""Acceptance 6: the examples validate against the CRD schemas; invalid resources are rejected with a message.

The schemas are OpenAPI v3.0 (boolean ``exclusiveMinimum``), which JSON Schema draft 4 reads the same way;
``x-kubernetes-*`` keys are ignored by the validator. The Channel defaults are checked against the contract's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fleetcast.contract.policy import ChannelPolicy

ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "manifests" / "crds"
EXAMPLES = ROOT / "manifests" / "examples"


def schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"{kind}.fleetcast.dev.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    return dict(version["schema"]["openAPIV3Schema"])


def errors(kind: str, body: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(schema(kind))
    return [error.message for error in validator.iter_errors(body)]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    """Every example resource is valid for its CRD."""
    for body in yaml.safe_load_all(path.read_text()):
        kind = {"Gateway": "gateways", "Channel": "channels"}[body["kind"]]
        assert errors(kind, body) == []


def test_examples_include_chat_and_conflating_scoreboard() -> None:
    """The examples show a chat family and a scoreboard that conflates."""
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in EXAMPLES.glob("*.yaml")}
    assert docs["chat"]["kind"] == "Channel"
    assert docs["scoreboard"]["spec"]["slowConsumer"]["policy"] == "conflate"


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        ("channels", {"transports": ["carrier-pigeon"]}, "is not one of"),
        ("channels", {"transports": []}, "should be non-empty"),
        ("channels", {"slowConsumer": {"policy": "teleport"}}, "is not one of"),
        ("channels", {"limits": {"maxMessageBytes": 2_000_000}}, "is greater than the maximum"),
        ("channels", {"history": {"maxAge": "an hour"}}, "does not match"),
        ("channels", {"surprise": True}, "Additional properties are not allowed"),
        ("gateways", {"redis": {"url": "redis://r"}}, "'image' is a required property"),
        ("gateways", {"image": "x", "redis": {}}, "is not valid under any of the given schemas"),
        ("gateways", {"image": "x", "redis": {"url": "redis://r"}, "replicas": {"min": 0}}, "less than the minimum"),
    ],
)
def test_invalid_resources_are_rejected_with_a_message(kind: str, spec: dict[str, Any], message: str) -> None:
    """The schema refuses bad specs and says why."""
    found = errors(kind, {"apiVersion": "fleetcast.dev/v1alpha1", "kind": kind, "metadata": {}, "spec": spec})
    assert any(message in text for text in found), found


def test_channel_defaults_are_the_contract_defaults() -> None:
    """spec: {} is valid, and each schema default equals ChannelPolicy()'s, so both sides agree."""
    spec_schema = schema("channels")["properties"]["spec"]
    assert errors("channels", {"spec": {}}) == []
    defaults = {key: value.get("default") for key, value in spec_schema["properties"].items()}
    expected = ChannelPolicy().to_spec()
    assert defaults["transports"] == expected["transports"]
    for section in ("history", "publish", "subscribe", "limits", "slowConsumer"):
        nested = spec_schema["properties"][section]["properties"]
        for key, value in expected[section].items():
            assert nested[key].get("default") == value, (section, key)
