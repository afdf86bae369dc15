"""Acceptance 4: the chart's CRDs are the ones in manifests/crds/, and the examples validate against them."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.chart.chart import CHART, CRD_SOURCES, ROOT, crd_schemas, objects

CHART_CRDS = CHART / "files" / "crds"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.yaml"))


def test_sources_exist() -> None:
    """manifests/crds/ holds the Gateway and Channel CRDs."""
    assert names(CRD_SOURCES) == ["channels.fleetcast.dev.yaml", "gateways.fleetcast.dev.yaml"]


def test_chart_copies_are_byte_identical() -> None:
    """The chart carries byte-identical copies (run scripts/sync-crds after changing manifests/crds/)."""
    assert names(CHART_CRDS) == names(CRD_SOURCES), "run scripts/sync-crds"
    for name in names(CRD_SOURCES):
        assert (CHART_CRDS / name).read_bytes() == (CRD_SOURCES / name).read_bytes(), f"{name}: run scripts/sync-crds"


def test_rendered_crds_equal_the_sources() -> None:
    """What the chart installs is the source CRD, plus only the chart's labels and the keep annotation."""
    rendered = {doc["metadata"]["name"]: doc for _, doc in objects({}) if doc["kind"] == "CustomResourceDefinition"}
    for name in names(CRD_SOURCES):
        source = yaml.safe_load((CRD_SOURCES / name).read_text())
        crd = rendered[source["metadata"]["name"]]
        assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"].pop("labels")["app.kubernetes.io/part-of"] == "fleetcast"
        assert crd == source


def test_crds_enabled_and_keep() -> None:
    """crds.enabled=false renders no CRD; crds.keep=false drops the keep annotation."""
    assert not [d for _, d in objects({"crds": {"enabled": False}}) if d["kind"] == "CustomResourceDefinition"]
    for _, doc in objects({"crds": {"keep": False}}):
        if doc["kind"] == "CustomResourceDefinition":
            assert "helm.sh/resource-policy" not in doc["metadata"].get("annotations", {})


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(example: Path) -> None:
    """Every example in manifests/examples/ is valid against its CRD's schema."""
    schemas = crd_schemas()
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == "fleetcast.dev/v1alpha1"
        jsonschema.Draft4Validator(schemas[doc["kind"]]).validate(doc)


def test_crd_schema_rejects_a_bad_gateway() -> None:
    """The CRD validation used here is real: an unknown spec field and a missing redis are refused."""
    schema = crd_schemas()["Gateway"]
    bad = {"apiVersion": "fleetcast.dev/v1alpha1", "kind": "Gateway", "metadata": {"name": "x"}, "spec": {"image": "i"}}
    with pytest.raises(jsonschema.ValidationError, match="redis"):
        jsonschema.Draft4Validator(schema).validate(bad)
    bad["spec"] |= {"redis": {"url": "redis://r:6379"}, "replica": {"min": 1}}
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.Draft4Validator(schema).validate(bad)
