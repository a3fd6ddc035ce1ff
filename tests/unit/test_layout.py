"""The layout keeps the architecture: layers with no arrow running back up, a core that knows
nothing of Kafka, Redis or HTTP, private helpers kept private, public names declared.

These read the source (``ast``), so they hold for every import, including the ones inside
functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "recsys_stream"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"settings", "files"}),
    frozenset({"_arrays", "events", "report"}),
    frozenset({"data", "base", "serving", "model"}),
    frozenset({"baselines", "learner"}),
    frozenset({"evaluation"}),
    frozenset({"stream", "reporting"}),
)
"""Bottom first. A part of the core may import from lower layers (and from itself), never from
its own layer's other parts or from above."""

ADAPTER_LIBRARIES = frozenset(
    {"kafka", "aiokafka", "faust", "mode", "redis", "fastapi", "starlette", "uvicorn", "httpx"}
)
TORCH_FREE = ("recsys_stream.events", "recsys_stream.report", "recsys_stream.serving")
"""What the API process imports: it must not pay for torch."""


def _layer(part: str) -> int:
    for depth, parts in enumerate(LAYERS):
        if part in parts:
            return depth
    raise AssertionError(f"recsys_stream.{part} is in no layer of {__name__}.LAYERS")


def _modules(folder: Path) -> Iterator[Path]:
    yield from sorted(folder.rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Every ``(module, names)`` the file imports; ``names`` is empty for ``import x``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]


def _part(path: Path) -> str:
    relative = path.relative_to(CORE)
    return relative.parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", list(_modules(CORE)), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_runs_back_up(path: Path) -> None:
    source = _part(path)
    if source in ("__init__",):
        return
    for module, _ in _imports(path):
        if not module.startswith("recsys_stream."):
            continue
        target = module.split(".")[1]
        if target == source:
            continue
        assert _layer(target) < _layer(source), (
            f"{path.relative_to(ROOT)} imports {module}: recsys_stream.{source} (layer "
            f"{_layer(source)}) may only use lower layers"
        )


@pytest.mark.parametrize("path", list(_modules(CORE)), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_knows_nothing_of_kafka_redis_or_http(path: Path) -> None:
    for module, _ in _imports(path):
        assert module.split(".")[0] not in ADAPTER_LIBRARIES, (
            f"{path.relative_to(ROOT)} imports {module}: adapters live in replay/ and services/"
        )


ADAPTERS = [
    path
    for folder in ("services", "replay", "scripts", "benchmarks")
    for path in _modules(ROOT / folder)
]


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_adapters_use_only_public_names_of_the_core(path: Path) -> None:
    for module, names in _imports(path):
        if not module.startswith("recsys_stream"):
            continue
        private_module = [part for part in module.split(".") if part.startswith("_")]
        assert not private_module, f"{path.relative_to(ROOT)} imports the private {module}"
        private_names = [
            name for name in names if name.startswith("_") and not name.startswith("__")
        ]
        assert not private_names, f"{path.relative_to(ROOT)} imports {private_names} of {module}"


def test_benchmarks_do_not_import_the_tests() -> None:
    for path in _modules(ROOT / "benchmarks"):
        for module, _ in _imports(path):
            assert module.split(".")[0] != "tests", f"{path.relative_to(ROOT)} imports {module}"


PACKAGES = sorted(
    path.parent for path in CORE.rglob("__init__.py") if "__pycache__" not in path.parts
)


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_states_its_public_names(folder: Path) -> None:
    name = ".".join(folder.relative_to(ROOT).parts)
    package = importlib.import_module(name)
    if folder == CORE:
        return  # the top level holds the version; its packages are the API
    public = getattr(package, "__all__", None)
    assert public, f"{name} has no __all__"
    assert sorted(public) == sorted(set(public)), f"{name}.__all__ repeats a name"
    for exported in public:
        assert hasattr(package, exported), f"{name}.__all__ names {exported}, which is missing"


def test_serving_the_api_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in TORCH_FREE)
        + "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
