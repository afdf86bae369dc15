"""The import-linter contracts hold the layering, and they would notice a break.

``make lint`` checks the real tree; these tests check the checker: each plants one forbidden import in a copy of
the source and expects the contract that forbids it to fail, and every module of the gateway must belong to a
layer (a module outside every layer is a module no layer rule applies to).
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contracts() -> list[dict[str, object]]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        found: list[dict[str, object]] = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    return found


@pytest.mark.parametrize(
    ("contract", "package", "source"),
    [
        ("layers of the gateway", "fleetcast", ROOT / "service" / "fleetcast"),
        ("layers of the operator", "fleetcast_operator", ROOT / "operator" / "fleetcast_operator"),
    ],
)
def test_every_module_is_in_a_layer(contract: str, package: str, source: Path) -> None:
    (layers,) = [c for c in contracts() if c["type"] == "layers" and str(c["name"]).startswith(contract)]
    named = {m.strip() for layer in layers["layers"] for m in str(layer).replace("|", ":").split(":")}  # type: ignore[attr-defined]
    modules = {f"{package}.{m.name}" for m in pkgutil.iter_modules([str(source)])}
    assert modules - named == set(), f"put these modules in a layer of {contract!r} (pyproject.toml)"
    assert named - modules == set(), "these layers name modules that do not exist"


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two packages and the contracts, copied: plants go into the copy, never into the tree."""
    root = tmp_path_factory.mktemp("contracts")
    shutil.copytree(ROOT / "service" / "fleetcast", root / "fleetcast", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "operator" / "fleetcast_operator",
        root / "fleetcast_operator",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_copy_keeps_every_contract(copy: Path) -> None:
    """Control: the unplanted copy passes, so a failure below is the plant's doing. (That the copy, not the
    installed tree, is what gets checked is shown by the plants failing at all.)"""
    result = lint(copy)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("fleetcast/pod.py", "import redis", "only the Redis broker"),
        ("fleetcast/api/health.py", "import redis.asyncio", "only the Redis broker"),
        ("fleetcast_operator/kube.py", "import fleetcast.errors", "the operator sees only the contract"),
        ("fleetcast/core/ids.py", "import fleetcast.hub", "layers of the gateway"),
        ("fleetcast/settings.py", "import fleetcast.pod", "layers of the gateway"),
        ("fleetcast/client/base.py", "import fleetcast.pod", "the reference client"),
        ("fleetcast/pod.py", "import kopf", "pods never call the Kubernetes API"),
        ("fleetcast_operator/gateway/spec.py", "import fleetcast_operator.autoscaler.tick", "layers of the operator"),
        ("fleetcast_operator/drain/planner.py", "import fleetcast_operator.autoscaler", "layers of the operator"),
    ],
)
def test_a_planted_import_breaks_its_contract(copy: Path, module: str, planted: str, contract: str) -> None:
    path = copy / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{planted}  # planted by the test\n")
        result = lint(copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0, f"{planted} in {module} broke no contract"
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken) or contract in result.stdout.split("Broken contracts")[-1], (
        result.stdout[-3000:]
    )
