"""The kustomize base: it names only files that exist, renders offline, and its operator is the chart's."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess

import pytest
import yaml

from tests.chart.chart import ROOT

MANIFESTS = ROOT / "manifests"


def test_resources_exist() -> None:
    """Every resource kustomization.yaml lists is a file in manifests/, CRDs included."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert {"crds/gateways.fleetcast.dev.yaml", "crds/channels.fleetcast.dev.yaml"} <= set(kustomization["resources"])
    for resource in kustomization["resources"]:
        assert (MANIFESTS / resource).is_file(), resource


def test_operator_manifests_match_the_chart() -> None:
    """manifests/operator/ is what scripts/render-operator-manifests renders from the chart now."""
    loader = importlib.machinery.SourceFileLoader("render", str(ROOT / "scripts" / "render-operator-manifests"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("render", loader))
    loader.exec_module(module)
    for name, text in module.render().items():
        assert (MANIFESTS / "operator" / name).read_text() == text, f"run scripts/render-operator-manifests ({name})"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
def test_kubectl_kustomize_renders_offline() -> None:
    """`kubectl kustomize manifests/` renders the CRDs, namespace, RBAC and operator without a cluster."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(out) if doc)
    assert kinds == sorted(
        ["CustomResourceDefinition"] * 2
        + ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"]
    )
