"""The Dockerfile: hadolint, pinned bases, the CPU target free of CUDA wheels, a non-root
runtime meant for a read-only root filesystem. (No Docker engine here: the image is not built;
see docs/deployment.md.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from tests.deploy.conftest import REPO_ROOT
from tests.deploy.settings_env import unknown_settings

DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
# Linux packages that exist only to give torch CUDA; none may reach the CPU image.
CUDA_PACKAGE = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
VOLUMES = ["/var/lib/recsys/trainer", "/var/lib/recsys/replay", "/var/lib/recsys/datasets"]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions (continuations joined, comment
    lines dropped, as BuildKit does)."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def lock() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "uv.lock").read_text())


def _stage(stages: list[Stage], name: str) -> Stage:
    matches = [stage for stage in stages if stage.name == name]
    assert matches, f"the Dockerfile has no stage {name!r}"
    return matches[0]


def stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_hadolint_reports_nothing() -> None:
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"hadolint:\n{done.stdout}{done.stderr}"


def test_hadolint_does_report_a_bad_dockerfile() -> None:
    # So that the test above cannot pass because the binary checks nothing.
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "-"],
        input="FROM python:latest\nRUN apt-get install curl\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # "latest"
    assert "DL3008" in done.stdout  # unpinned apt package


def test_every_base_image_is_pinned_by_tag(stages: list[Stage]) -> None:
    names = set()
    for stage in stages:
        if stage.base not in names:  # not an earlier stage: an image from a registry
            repository, _, tag = stage.base.rpartition(":")
            assert repository, f"{stage.base} has no tag"
            assert "/" not in tag, f"{stage.base} has no tag"
            assert tag != "latest", stage.base
            assert "$" not in stage.base, f"{stage.base}: pin the tag in the FROM line"
        names.add(stage.name)


def test_the_python_base_satisfies_requires_python(stages: list[Stage]) -> None:
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    python = _stage(stages, "python").base
    assert python.startswith("python:"), python
    version = python.split(":")[1].split("-")[0]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"pin the patch release: {python}"
    assert version in SpecifierSet(requires), f"{python} does not satisfy {requires}"


def test_the_targets_exist_and_cpu_is_the_default(stages: list[Stage]) -> None:
    assert stages[-1].name == "cpu", "the last stage is what a plain `docker build` builds"
    assert _stage(stages, "trainer-cuda").base == "runtime"
    assert _stage(stages, "cpu").base == "runtime"


def test_the_cpu_torch_is_the_locked_version(stages: list[Stage], lock: dict[str, Any]) -> None:
    (torch,) = [p for p in lock["package"] if p["name"] == "torch"]
    builder = _stage(stages, "builder-cpu")
    args = dict(arg.partition("=")[::2] for arg in builder.all("ARG"))
    assert args.get("TORCH_VERSION") == torch["version"]
    (run,) = [r for r in builder.all("RUN") if "download.pytorch.org/whl/cpu" in r]
    assert '"torch==${TORCH_VERSION}"' in run
    assert "--no-deps" in run


def _torch_only_cuda_packages(lock: dict[str, Any]) -> set[str]:
    """Locked packages matching CUDA_PACKAGE that only torch brings in (directly or not)."""
    packages = {p["name"]: p for p in lock["package"]}

    def requirements(name: str) -> set[str]:
        package = packages[name]
        names = {d["name"] for d in package.get("dependencies", [])}
        for extra in package.get("optional-dependencies", {}).values():
            names |= {d["name"] for d in extra}
        return names

    def closure(roots: set[str], stop: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(roots - stop)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(requirements(name) - stop - seen)
        return seen

    (project,) = [p for p in lock["package"] if p.get("source", {}).get("editable") == "."]
    runtime = {d["name"] for d in project.get("dependencies", [])}
    others = closure(runtime, stop={"torch"})
    from_torch = closure({"torch"}, stop=set())
    cuda = {name for name in packages if CUDA_PACKAGE.match(name)}
    assert cuda <= from_torch, f"CUDA packages not pulled by torch: {sorted(cuda - from_torch)}"
    assert not cuda & others, f"CUDA packages also needed elsewhere: {sorted(cuda & others)}"
    return cuda


def test_the_cpu_target_leaves_out_torch_and_exactly_its_cuda_packages(
    stages: list[Stage], lock: dict[str, Any]
) -> None:
    builder = _stage(stages, "builder-cpu")
    (export,) = [r for r in builder.all("RUN") if "uv export" in r]
    left_out = set(re.findall(r"--no-emit-package (\S+)", export))
    assert left_out == {"torch"} | _torch_only_cuda_packages(lock)
    assert "--frozen" in export
    assert "--no-dev" in export
    assert "--require-hashes" in export


def test_the_cuda_target_installs_the_whole_lock(stages: list[Stage]) -> None:
    (export,) = [r for r in _stage(stages, "builder-cuda").all("RUN") if "uv export" in r]
    assert "--no-emit-package" not in export
    assert "--frozen" in export
    assert "--require-hashes" in export


def test_the_runtime_is_non_root_with_fixed_ids(stages: list[Stage]) -> None:
    runtime = _stage(stages, "runtime")
    assert runtime.all("USER") == ["10001:10001"]
    (create,) = [r for r in runtime.all("RUN") if "useradd" in r]
    assert "--gid 10001" in create
    assert "--uid 10001" in create
    for stage in stages:
        if stage.name in {"cpu", "trainer-cuda"}:
            assert not stage.all("USER"), f"{stage.name} must not change the user"


def test_the_runtime_is_made_for_a_read_only_root_filesystem(stages: list[Stage]) -> None:
    runtime = _stage(stages, "runtime")
    (volumes,) = runtime.all("VOLUME")
    assert json.loads(volumes) == VOLUMES
    env = stage_env(runtime)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    # Bytecode is compiled when building, or every start would compile torch in memory.
    assert stage_env(_stage(stages, "builder"))["UV_COMPILE_BYTECODE"] == "1"
    # Every state path the settings point at lies in a declared volume.
    paths = {k: v for k, v in env.items() if k.startswith("RECSYS_") and v.startswith("/")}
    assert paths
    for name, path in paths.items():
        assert any(path == v or path.startswith(v + "/") for v in VOLUMES), (name, path)


def test_the_image_settings_are_real_settings(stages: list[Stage]) -> None:
    names = [
        name
        for stage in stages
        for name in stage_env(stage)
        if name.startswith("RECSYS_") or name in {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}
    ]
    assert names
    assert unknown_settings(names) == []


def test_the_entrypoint_is_the_cli(stages: list[Stage]) -> None:
    runtime = _stage(stages, "runtime")
    assert runtime.all("ENTRYPOINT") == ['["recsys-stream"]']
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "recsys-stream" in scripts
    assert runtime.all("STOPSIGNAL") == ["SIGINT"]
    assert _stage(stages, "trainer-cuda").all("CMD") == ['["trainer"]']


def test_dockerignore_lets_in_only_what_the_build_copies(stages: list[Stage]) -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: everything is excluded first"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for stage in stages:
        for args in stage.all("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            sources.update(words[:-1])
        for args in stage.all("RUN"):
            sources.update(re.findall(r"--mount=type=bind,source=([^,\s]+)", args))
    sources = {s.rstrip("/") for s in sources if not s.startswith("/")}  # from stages: absolute
    assert sources == allowed
    for path in sources:
        assert (REPO_ROOT / path).exists(), path
    assert ".env" not in allowed
