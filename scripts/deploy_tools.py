#!/usr/bin/env python3
"""Install the command-line tools that check the deployment files offline.

* **kustomize** (renders k8s/overlays/*): built with ``go install`` from the Go module proxy,
  at the version pinned below, into ``~/.cache/recsys-stream/tools/go/bin`` (GOPATH, module
  and build caches beside it), so every clone and worktree shares one build (~40 s cold).
* **promtool** (checks deploy/prometheus): Debian's ``prometheus`` package. Only its promtool is
  needed, so the package is downloaded with ``apt-get download`` and unpacked into
  ``~/.cache/recsys-stream/tools/promtool``: installing it would also start a Prometheus server
  on machines with systemd. ``apt-get update`` is run first when the download fails as root.

hadolint, kubernetes-validate and check-jsonschema come from the ``dev`` extra (PyPI).

Used by the session fixtures of ``tests/deploy``; a person can run it too::

    python scripts/deploy_tools.py            # install what is missing, print the paths
    python scripts/deploy_tools.py kustomize  # only one tool

Only the standard library is used. A missing ``go`` or ``apt-get`` is an error with a message
that says what to install: these checks are meant to run, not to be skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# v5.8.2 is the newest release whose go.mod accepts Go 1.26 (v5.8.3 asks for Go 1.27).
KUSTOMIZE_VERSION = "v5.8.2"

TOOLS_DIR = Path.home() / ".cache" / "recsys-stream" / "tools"
GO_DIR = TOOLS_DIR / "go"
PROMTOOL_DIR = TOOLS_DIR / "promtool"

GO_TIMEOUT_S = 900.0
APT_TIMEOUT_S = 600.0


class ToolError(RuntimeError):
    """A tool could not be installed; the message says why and what to do."""


def _go_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=str(GO_DIR),
        GOBIN=str(GO_DIR / "bin"),
        GOMODCACHE=str(GO_DIR / "pkg" / "mod"),
        GOCACHE=str(GO_DIR / "cache"),
        # The version asked for, built by the Go installed here (no toolchain download).
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=mod",
        CGO_ENABLED="0",
    )
    return env


def _run(
    command: list[str],
    env: Mapping[str, str] | None,
    timeout: float,
    what: str,
    cwd: str | None = None,
) -> str:
    try:
        done = subprocess.run(
            command,
            env=None if env is None else dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{what}: `{' '.join(command)}` took more than {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise ToolError(f"{what}: `{' '.join(command)}` exited {done.returncode}:\n{tail}")
    return done.stdout


def kustomize() -> Path:
    """The path of kustomize ``KUSTOMIZE_VERSION``, built once with ``go install``."""
    binary = GO_DIR / "bin" / "kustomize"
    stamp = GO_DIR / "bin" / f".kustomize-{KUSTOMIZE_VERSION}"
    if binary.is_file() and stamp.is_file():
        return binary
    # The official tarball's place, for shells whose PATH lacks it.
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise ToolError(
            "kustomize is built with `go install`, and `go` is not on PATH: install Go "
            "(1.24 or newer; e.g. `apt-get install golang-go` or the official tarball) and run "
            "again. The deployment tests render k8s/ with it; they are not skipped."
        )
    GO_DIR.mkdir(parents=True, exist_ok=True)
    _run(
        [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
        _go_environment(),
        GO_TIMEOUT_S,
        "building kustomize",
    )
    version = _run([str(binary), "version"], None, 60, "kustomize version").strip()
    if version != KUSTOMIZE_VERSION:
        raise ToolError(f"kustomize reports {version!r}, expected {KUSTOMIZE_VERSION}")
    stamp.touch()
    return binary


def promtool() -> Path:
    """The path of promtool: on PATH, or unpacked from Debian's prometheus package."""
    on_path = shutil.which("promtool")
    if on_path is not None:
        return Path(on_path)
    unpacked = PROMTOOL_DIR / "usr" / "bin" / "promtool"
    if unpacked.is_file():
        return unpacked
    apt_get = shutil.which("apt-get")
    dpkg_deb = shutil.which("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise ToolError(
            "promtool is missing and this is not a Debian-like system (no apt-get/dpkg-deb): "
            "install Prometheus' promtool (2.42 or newer) on PATH and run again."
        )
    PROMTOOL_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=PROMTOOL_DIR, prefix=".download-") as scratch:
        try:
            _run([apt_get, "download", "prometheus"], None, APT_TIMEOUT_S, "apt", cwd=scratch)
        except ToolError:
            if os.geteuid() != 0:
                raise ToolError(
                    "`apt-get download prometheus` failed and refreshing the package lists "
                    "needs root: run `sudo apt-get update` (or install promtool) and run again."
                ) from None
            _run([apt_get, "update"], None, APT_TIMEOUT_S, "apt-get update")
            _run([apt_get, "download", "prometheus"], None, APT_TIMEOUT_S, "apt", cwd=scratch)
        packages = sorted(Path(scratch).glob("prometheus_*.deb"))
        if not packages:
            raise ToolError("apt-get download prometheus left no prometheus_*.deb")
        staging = Path(scratch) / "root"
        _run([dpkg_deb, "-x", str(packages[-1]), str(staging)], None, 120, "dpkg-deb")
        tool = staging / "usr" / "bin" / "promtool"
        if not tool.is_file():
            raise ToolError(f"{packages[-1].name} holds no usr/bin/promtool")
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        tool.replace(unpacked)  # the last step: a half-done run leaves no promtool behind
    return unpacked


TOOLS = {"kustomize": kustomize, "promtool": promtool}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "tools", nargs="*", metavar="TOOL", help="kustomize, promtool (default: all)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tools) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(unknown)}")
    for name in args.tools or list(TOOLS):
        try:
            print(f"{name}: {TOOLS[name]()}")
        except ToolError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
