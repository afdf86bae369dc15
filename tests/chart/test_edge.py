"""The chart's optional edge (issue 15, acceptance 5): an Ingress annotated for ingress-nginx and a Gateway API
HTTPRoute, both routed to the Service the operator makes, both valid for Kubernetes 1.31-1.35 (the HTTPRoute
against the bundled subset of its CRD schema), and kept for long-lived streams: no buffering, timeouts far above
the heartbeats, no session affinity."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

from tests.chart.chart import KUBE_VERSIONS, VALUE_SETS, of_kind, render
from tests.chart.test_render import HTTPROUTE_SCHEMA
from tests.chart.test_values_schema import schema_error

EDGE = VALUE_SETS["edge"]
HEARTBEATS_SECONDS = 20
"""The longest quiet a live stream has: WebSocket pings every 20 s (SSE comments every 15 s)."""


def test_nothing_at_the_edge_by_default() -> None:
    """Without values, the chart renders neither an Ingress nor an HTTPRoute."""
    assert of_kind({}, "Ingress") == []
    assert of_kind({}, "HTTPRoute") == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_ingress_validates_strictly_and_routes_to_the_gateway_service(version: str) -> None:
    """The Ingress is valid for this Kubernetes version and sends every host and TLS to the operator's Service."""
    (ingress,) = of_kind(EDGE, "Ingress")
    kubernetes_validate.validate(ingress, version, strict=True)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "rt-tls", "hosts": ["rt.example.com", "*.rt.example.com"]}]
    backends = {(rule["host"], path["backend"]["service"]["name"], path["backend"]["service"]["port"]["name"])
                for rule in spec["rules"] for path in rule["http"]["paths"]}  # fmt: skip
    assert backends == {(h, "fleetcast-gateway", "http") for h in ("rt.example.com", "*.rt.example.com")}
    assert ingress["metadata"]["labels"]["exposure"] == "public"


def test_ingress_keeps_streams_flowing() -> None:
    """ingress-nginx passes events unbuffered, waits far longer than any heartbeat, takes a 1 MiB publish, and pins
    no client to a pod; the values' own annotations are added (and win)."""
    (ingress,) = of_kind(EDGE, "Ingress")
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) > 3 * HEARTBEATS_SECONDS
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "2m"
    assert notes["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert not [key for key in notes if "affinity" in key or "upstream-hash-by" in key]
    override = {"ingress": {"enabled": True, "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}}}
    (overridden,) = of_kind(override, "Ingress")
    assert overridden["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "8m"


def test_ingress_without_hosts_or_tls_routes_every_host() -> None:
    (ingress,) = of_kind({"ingress": {"enabled": True}}, "Ingress")
    kubernetes_validate.validate(ingress, KUBE_VERSIONS[-1], strict=True)
    assert "tls" not in ingress["spec"]
    assert [set(rule) for rule in ingress["spec"]["rules"]] == [{"http"}]


def test_httproute_validates_against_the_gateway_api_schema_and_has_no_request_timeout() -> None:
    """The HTTPRoute passes the CRD subset, attaches where the values say, sends to the operator's Service port,
    and turns the request timeout off (a stream is one request for hours)."""
    (route,) = of_kind(EDGE, "HTTPRoute")
    jsonschema.Draft202012Validator(HTTPROUTE_SCHEMA).validate(route)
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "edge", "namespace": "infra", "sectionName": "https"}]
    assert spec["hostnames"] == ["rt.example.com"]
    (rule,) = spec["rules"]
    assert rule["backendRefs"] == [{"name": "fleetcast-gateway", "port": 80}]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (default,) = of_kind({"httpRoute": {"enabled": True, "parentRefs": [{"name": "edge"}]}}, "HTTPRoute")
    assert default["spec"]["rules"][0]["timeouts"] == {"request": "0s"}
    (plain,) = of_kind({"httpRoute": {"enabled": True, "parentRefs": [{"name": "e"}], "timeouts": None}}, "HTTPRoute")
    assert "timeouts" not in plain["spec"]["rules"][0]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r["spec"]["rules"][0].update(timeout={"request": "0s"}), "timeout"),
        (lambda r: r["spec"]["rules"][0]["timeouts"].update(request="1 hour"), "1 hour"),
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].pop("port"), "port"),
        (lambda r: r["spec"]["rules"][0]["matches"][0]["path"].update(value="events"), "events"),
        (lambda r: r["spec"].update(hostnames=["Bad_Host"]), "Bad_Host"),
        (lambda r: r["spec"]["parentRefs"][0].update(namespace="Infra"), "Infra"),
    ],
)
def test_the_bundled_httproute_schema_bites(change: Any, where: str) -> None:
    """The schema the route is checked against refuses what the API server would: a misspelt field, a duration
    that is not one, a Service backend without a port, a relative path, a bad hostname or namespace."""
    (route,) = of_kind(EDGE, "HTTPRoute")
    change(route)
    with pytest.raises(jsonschema.ValidationError) as refused:
        jsonschema.Draft202012Validator(HTTPROUTE_SCHEMA).validate(route)
    assert where in str(refused.value)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"ingress": {"enabled": True, "timeoutSeconds": 10}}, "timeoutSeconds"),
        ({"ingress": {"enabled": True, "sticky": True}}, "sticky"),
        ({"ingress": {"hosts": ["https://rt.example.com"]}}, "hosts"),
        ({"ingress": {"tls": {"secretName": "x", "hosts": []}}}, "hosts"),
        ({"httpRoute": {"parentRefs": [{"name": "edge", "listener": "https"}]}}, "listener"),
        ({"httpRoute": {"timeouts": {"request": "forever"}}}, "request"),
        ({"httpRoute": {"hostnames": ["*example.com"]}}, "hostnames"),
    ],
)
def test_edge_values_are_strict(values: dict[str, Any], names: str) -> None:
    """Unknown keys, a timeout at or below the heartbeats, URLs as hosts and durations that are not Gateway API
    durations are refused by the values schema, naming the key."""
    assert names in schema_error(values)


def test_an_httproute_needs_a_parent() -> None:
    """Enabled without parentRefs, rendering fails with a message that says what to set."""
    with pytest.raises(helm.HelmError, match=r"httpRoute\.parentRefs"):
        render({"httpRoute": {"enabled": True}})
