"""Fixtures of the deployment checks: the repository's files, parsed, and the tools that check
them (kustomize and promtool are installed once per machine by scripts/deploy_tools.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "gpu", "prod", "scale-out")


def _deploy_tools() -> ModuleType:
    """scripts/deploy_tools.py, loaded from its path (scripts/ is not a package)."""
    path = REPO_ROOT / "scripts" / "deploy_tools.py"
    spec = importlib.util.spec_from_file_location("recsys_deploy_tools", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _tool(name: str) -> Path:
    tools = _deploy_tools()
    try:
        path: Path = getattr(tools, name)()
    except tools.ToolError as exc:
        pytest.fail(f"cannot install {name}: {exc}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def kustomize() -> Path:
    return _tool("kustomize")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return _tool("promtool")


@pytest.fixture(scope="session")
def rendered(kustomize: Path) -> dict[str, list[dict[str, Any]]]:
    """Each overlay of k8s/overlays, rendered by kustomize: overlay name -> its objects."""
    out: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        done = subprocess.run(
            [str(kustomize), "build", str(REPO_ROOT / "k8s" / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"kustomize build k8s/overlays/{overlay}:\n{done.stderr}", pytrace=False)
        out[overlay] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return out


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed (YAML anchors and merge keys resolved)."""
    document: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return document
