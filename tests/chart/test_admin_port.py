"""The gateway's admin port in the chart: Prometheus scrapes it by name through a headless Service of its own, and
the NetworkPolicy lets only the operator and Prometheus reach it, while the public port stays open (issue 13)."""

from __future__ import annotations

from typing import Any

from fleetcast_operator.gateway.resources import deployment, selector_labels, service
from fleetcast_operator.gateway.spec import parse_gateway_spec
from tests.chart.chart import VALUE_SETS, of_kind

MONITORED = VALUE_SETS["networkpolicy-servicemonitor"]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


SPEC = parse_gateway_spec({"image": "fleetcast/gateway:0.1.0", "redis": {"url": "redis://redis:6379/0"}})


def _operator_pod() -> tuple[dict[str, str], dict[str, Any]]:
    """The labels and container of a gateway pod as the operator builds it."""
    template = deployment("edge", "realtime", "uid-1", SPEC, replicas=2)["spec"]["template"]
    return template["metadata"]["labels"], template["spec"]["containers"][0]


def test_servicemonitor_scrapes_the_admin_port_through_the_metrics_service() -> None:
    """The ServiceMonitor selects the chart's headless metrics Service (not the operator's public one) and scrapes
    /metrics on its `admin` port, which targets the gateway container's `admin` port on the operator's pods."""
    (monitor,) = of_kind(MONITORED, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("admin", "/metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in of_kind(MONITORED, "Service") if _matches(selector, s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in selected] == ["fleetcast-gateway-metrics"]
    (metrics,) = selected
    assert metrics["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [("admin", "admin")]
    labels, container = _operator_pod()
    assert _matches(metrics["spec"]["selector"], labels)
    assert "admin" in {port["name"] for port in container["ports"]}
    public = service("edge", "realtime", "uid-1", SPEC)
    assert not _matches(selector, public["metadata"]["labels"])
    assert of_kind({}, "ServiceMonitor") == []


def test_networkpolicy_is_on_by_default_and_guards_the_admin_port() -> None:
    """By default a NetworkPolicy selects the operator's gateway pods: `http` from anywhere, `admin` only from the
    operator's pods and the Prometheus peers of `networkPolicy.adminIngressFrom`."""
    policies = {p["metadata"]["name"]: p for p in of_kind({}, "NetworkPolicy")}
    gateway = policies["fleetcast-gateway"]
    labels, _ = _operator_pod()
    assert _matches(gateway["spec"]["podSelector"]["matchLabels"], labels)
    assert _matches(gateway["spec"]["podSelector"]["matchLabels"], selector_labels("another-gateway"))
    rules = {rule["ports"][0]["port"]: rule for rule in gateway["spec"]["ingress"]}
    assert set(rules) == {"http", "admin"}
    assert "from" not in rules["http"]
    operator, prometheus = rules["admin"]["from"]
    (operator_pod,) = of_kind({}, "Deployment")
    assert operator["podSelector"]["matchLabels"] == operator_pod["spec"]["selector"]["matchLabels"]
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}

    only_operator = of_kind({"networkPolicy": {"adminIngressFrom": []}}, "NetworkPolicy")
    (narrowed,) = [p for p in only_operator if p["metadata"]["name"] == "fleetcast-gateway"]
    admin = [rule for rule in narrowed["spec"]["ingress"] if rule["ports"][0]["port"] == "admin"]
    assert [len(rule["from"]) for rule in admin] == [1]
    assert of_kind({"networkPolicy": {"enabled": False}}, "NetworkPolicy") == []
