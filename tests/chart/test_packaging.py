"""Acceptance 6 and the images: skaffold.yaml parses and everything it names exists; the Dockerfiles build in
two stages onto a slim Python 3.11 and run as a numeric non-root user. (No Docker engine or cluster runs here:
the images are not built and skaffold is not run; see docs/install.md.)"""

from __future__ import annotations

import re

import helm_python as helm
import pytest
import yaml

from tests.chart.chart import CHART, ROOT

SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
DOCKERFILES = ["Dockerfile.gateway", "Dockerfile.operator"]


def test_skaffold_schema_and_artifacts() -> None:
    """skaffold/v4beta13, two artifacts whose contexts and Dockerfiles exist."""
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta13"
    assert SKAFFOLD["kind"] == "Config"
    artifacts = SKAFFOLD["build"]["artifacts"]
    assert [a["image"] for a in artifacts] == ["fleetcast/gateway", "fleetcast/operator"]
    for artifact in artifacts:
        context = ROOT / artifact.get("context", ".")
        assert context.is_dir()
        assert (context / artifact["docker"]["dockerfile"]).is_file()


def test_skaffold_deploys_the_chart_with_built_images() -> None:
    """The Helm release points at the chart, and every image value is injected from a built artifact."""
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    artifacts = {re.sub(r"[^A-Za-z0-9]", "_", a["image"]) for a in SKAFFOLD["build"]["artifacts"]}
    used = {m for value in templates.values() for m in re.findall(r"IMAGE_(?:REPO|TAG)_(\w+)", value)}
    assert used == artifacts
    with helm.Chart.load(CHART) as chart:
        values = chart.values
    for key in templates:
        node = values
        for part in key.split("."):
            node = node[part]  # a KeyError names a value the chart does not have


def test_skaffold_dev_profile_sets_real_values() -> None:
    """The dev profile's values are accepted by the chart's schema, and the gateway Service is port-forwarded."""
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "dev"]
    (patch,) = profile["patches"]
    nested: dict[str, object] = {}
    for key, value in patch["value"].items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(nested)
    (forward,) = SKAFFOLD["portForward"]
    assert forward["resourceName"] == "fleetcast-gateway"  # the operator's Service for the default Gateway
    assert forward["port"] == 80


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_is_slim_multistage_and_non_root(name: str) -> None:
    """Build tools stay in the build stage; the final stage copies only the virtualenv and runs as UID 10001."""
    text = (ROOT / name).read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2
    assert "python:3.11-slim" in text
    build, final = stages
    assert "build-essential" in build
    assert "build-essential" not in final
    assert "apt-get install" not in final
    assert "COPY --from=build /opt/fleetcast /opt/fleetcast" in final
    assert re.search(r"^USER 10001:10001$", final, flags=re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in final


def test_dockerignore_keeps_the_context_small() -> None:
    """The build context is the package sources only."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    assert {"!pyproject.toml", "!service/", "!operator/"} <= set(lines)
