"""k8s/: every overlay rendered by kustomize, validated strictly against the Kubernetes JSON
schemas, the operators' resources (Strimzi, Prometheus operator) checked field by field, and
the policies every workload keeps. No cluster here: nothing is applied."""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.conftest import OVERLAYS, REPO_ROOT
from tests.deploy.settings_env import unknown_settings
from tests.deploy.test_compose import SECRET_NAME, WRITES

# The oldest Kubernetes these manifests are meant for, and the newest schemas that the locked
# kubernetes-validate ships (a removed API would fail there).
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
# Custom resources: no schema in kubernetes-validate; checked field by field below.
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
APP_IMAGE = "ghcr.io/recsys-stream/recsys-stream"
NAMESPACE = "recsys-stream"
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}

Objects = list[dict[str, Any]]


def _find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def _one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    (found,) = _find(objects, kind, name)
    return found


def _pod_specs(objects: Objects) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for o in objects:
        if o["kind"] in WORKLOADS:
            yield o, o["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _settings(objects: Objects) -> dict[str, str]:
    """The data of the settings ConfigMap (its generated name has a hash suffix)."""
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("recsys-settings-")
    ]
    data: dict[str, str] = config["data"]
    return data


def _environment(container: dict[str, Any], objects: Objects) -> dict[str, Any]:
    """Every variable a container gets: envFrom ConfigMaps, then env (which wins)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(_one(objects, "ConfigMap", name)["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def _is_app(container: dict[str, Any]) -> bool:
    return bool(container["image"].startswith(APP_IMAGE + ":"))


def _role(container: dict[str, Any]) -> str:
    return str(container["args"][0])


def _project_version() -> str:
    version: str = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


EACH_OVERLAY = pytest.mark.parametrize("overlay", OVERLAYS)


@EACH_OVERLAY
def test_the_overlay_has_the_whole_application(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    _one(objects, "Namespace", NAMESPACE)
    _one(objects, "StatefulSet", "trainer")
    _one(objects, "StatefulSet", "redis")
    _one(objects, "Deployment", "api")
    _one(objects, "Job", "replay")
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == NAMESPACE, o["metadata"]["name"]


@EACH_OVERLAY
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(
    rendered: dict[str, Objects], overlay: str, version: str
) -> None:
    errors = []
    for o in rendered[overlay]:
        if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{o['kind']}/{o['metadata']['name']} {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{o['apiVersion']} {o['kind']}: no schema in Kubernetes {version}")
    assert errors == []


def test_strict_validation_rejects_a_misspelt_field(rendered: dict[str, Objects]) -> None:
    deployment = yaml.safe_load(yaml.safe_dump(_one(rendered["dev"], "Deployment", "api")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@EACH_OVERLAY
def test_every_container_runs_locked_down(rendered: dict[str, Objects], overlay: str) -> None:
    for workload, pod in _pod_specs(rendered[overlay]):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        assert pod.get("terminationGracePeriodSeconds") == 60, where
        assert pod.get("automountServiceAccountToken") is False, where
        pod_context = pod.get("securityContext", {})
        for container in _containers(pod):
            context = {**pod_context, **container.get("securityContext", {})}
            name = f"{where} {container['name']}"
            assert context.get("runAsNonRoot") is True, name
            assert isinstance(context.get("runAsUser"), int), name
            assert context["runAsUser"] > 0, name
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, name
            assert container["securityContext"].get("allowPrivilegeEscalation") is False, name
            assert container["securityContext"].get("capabilities", {}).get("drop") == ["ALL"]
            assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, name
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp, f"{name}: no writable /tmp"
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            assert "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp is not an emptyDir"


@EACH_OVERLAY
def test_every_container_has_resources_and_probes(
    rendered: dict[str, Objects], overlay: str
) -> None:
    for workload, pod in _pod_specs(rendered[overlay]):
        for container in _containers(pod):
            name = f"{workload['kind']}/{workload['metadata']['name']} {container['name']}"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(part, {}), f"{name}: no {part}.{resource}"
            if workload["kind"] == "Job":
                continue  # a run to completion: no server to probe (nothing routes to it)
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container, name
            if _is_app(container):
                port = {"trainer": "http-metrics", "api": "http"}[_role(container)]
                assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
                assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}


@EACH_OVERLAY
def test_every_image_is_pinned(rendered: dict[str, Objects], overlay: str) -> None:
    for _, pod in _pod_specs(rendered[overlay]):
        for container in _containers(pod):
            image = container["image"]
            if "@sha256:" in image:
                continue
            repository, _, tag = image.rpartition(":")
            assert repository, f"{image} has no tag"
            assert "/" not in tag, f"{image} has no tag"
            assert tag != "latest", image
            if _is_app(container):
                assert tag in {_project_version(), f"{_project_version()}-cuda"}, image


def test_the_repository_holds_no_secret() -> None:
    for path in (REPO_ROOT / "k8s").rglob("*"):
        if path.suffix in {".yaml", ".yml"}:
            for document in yaml.safe_load_all(path.read_text()):
                if not document:
                    continue
                assert document.get("kind") != "Secret", path
                assert "secretGenerator" not in document, path


@EACH_OVERLAY
def test_secrets_come_from_secret_references(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    assert not _find(objects, "Secret")
    for workload, pod in _pod_specs(objects):
        for container in _containers(pod):
            for item in container.get("env", []):
                if SECRET_NAME.search(item["name"]):
                    assert "value" not in item, f"{workload['metadata']['name']}: {item['name']}"
                    assert "secretKeyRef" in item["valueFrom"], item["name"]
    for key, value in _settings(objects).items():
        assert not SECRET_NAME.search(key), f"a secret in the ConfigMap: {key}"
        assert "@" not in value, f"credentials in a URL of the ConfigMap: {key}"
    api = _one(objects, "Deployment", "api")["spec"]["template"]["spec"]
    (container,) = api["containers"]
    (key,) = [e for e in container["env"] if e["name"] == "RECSYS_API__API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "recsys-api-key", "key": "api-key"}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/recsys/api-keys"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in api["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "recsys-api-key"


@EACH_OVERLAY
def test_every_variable_of_an_app_container_is_a_setting(
    rendered: dict[str, Objects], overlay: str
) -> None:
    seen = 0
    for _, pod in _pod_specs(rendered[overlay]):
        for container in _containers(pod):
            if _is_app(container):
                seen += 1
                assert unknown_settings(_environment(container, rendered[overlay])) == []
    assert seen == 3


@EACH_OVERLAY
def test_state_lives_on_volumes(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    for workload, pod in _pod_specs(objects):
        for container in _containers(pod):
            if not _is_app(container):
                continue
            mounts = [m["mountPath"] for m in container["volumeMounts"]]
            for key, value in _environment(container, objects).items():
                if key.startswith(WRITES[_role(container)]) and str(value).startswith("/"):
                    assert any(PurePosixPath(value).is_relative_to(m) for m in mounts), (
                        f"{workload['metadata']['name']}: {key}={value} is not on a volume"
                    )


@EACH_OVERLAY
def test_the_trainer_is_stateful(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    trainer = _one(objects, "StatefulSet", "trainer")
    scales_out = _settings(objects).get("RECSYS_TRAINER__SCALE_OUT") == "true"
    assert (trainer["spec"]["replicas"] > 1) == scales_out
    (claim,) = trainer["spec"]["volumeClaimTemplates"]
    (container,) = trainer["spec"]["template"]["spec"]["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert mount["mountPath"] == "/var/lib/recsys/trainer"
    service = _one(objects, "Service", trainer["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    port = int(_settings(objects)["RECSYS_TRAINER__HTTP_PORT"])
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": port, "targetPort": "http-metrics"}
    ]
    assert container["ports"] == [{"name": "http-metrics", "containerPort": port}]


def test_the_scale_out_overlay_runs_workers_that_share_one_model(
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["scale-out"]
    settings = _settings(objects)
    assert settings["RECSYS_TRAINER__SCALE_OUT"] == "true"
    trainer = _one(objects, "StatefulSet", "trainer")
    # Workers: more than one, no more than the partitions; each its pod's name.
    assert 1 < trainer["spec"]["replicas"] <= int(settings["RECSYS_KAFKA__PARTITIONS"])
    assert "RECSYS_TRAINER__WORKER_NAME" not in settings
    assert trainer["spec"]["podManagementPolicy"] == "Parallel"
    pod = trainer["spec"]["template"]["spec"]
    spread = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # The checkpoints on one volume that every worker mounts (a new worker starts from it).
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    claim = _one(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    checkpoint = PurePosixPath(settings["RECSYS_TRAINER__CHECKPOINT_PATH"])
    assert checkpoint.is_relative_to(mount["mountPath"])
    budget = _one(objects, "PodDisruptionBudget", "trainer")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        trainer["spec"]["template"]["metadata"]["labels"].items()
    )
    (updates,) = [
        t
        for t in _find(objects, "KafkaTopic")
        if t["spec"]["topicName"] == settings["RECSYS_KAFKA__UPDATES_TOPIC"]
    ]
    assert updates["spec"]["partitions"] == 1
    assert int(updates["spec"]["config"]["max.message.bytes"]) >= 64 * 1024 * 1024
    for overlay in ("dev", "prod", "gpu"):
        assert "RECSYS_TRAINER__SCALE_OUT" not in _settings(rendered[overlay])


@EACH_OVERLAY
def test_the_api_scales_and_survives_disruptions(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    api = _one(objects, "Deployment", "api")
    assert "replicas" not in api["spec"], "the HPA owns the replica count"
    labels = api["spec"]["template"]["metadata"]["labels"]
    hpa = _one(objects, "HorizontalPodAutoscaler", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "api",
    }
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = _one(objects, "PodDisruptionBudget", "api")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one(objects, "Service", "api")
    assert service["spec"]["selector"].items() <= labels.items()
    port = int(_settings(objects)["RECSYS_API__PORT"])
    assert service["spec"]["ports"][0]["port"] == port
    if overlay in {"prod", "gpu", "scale-out"}:
        assert hpa["spec"]["minReplicas"] >= 3


@EACH_OVERLAY
def test_the_replay_job_resumes_from_a_volume(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    job = _one(objects, "Job", "replay")
    assert job["spec"]["backoffLimit"] >= 1
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "replay"
    assert "--resume" in container["args"]
    state_dir = _settings(objects)["RECSYS_REPLAY__STATE_DIR"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == state_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    _one(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


@EACH_OVERLAY
def test_network_policies_isolate_the_namespace(rendered: dict[str, Objects], overlay: str) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in _find(rendered[overlay], "NetworkPolicy")}
    deny = policies["default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # Only the API takes traffic from outside the namespace: an ingress rule with no `from`.
    open_to_all = [
        name
        for name, spec in policies.items()
        for rule in spec.get("ingress", [])
        if "from" not in rule
    ]
    assert open_to_all == ["api-ingress"]
    assert (
        policies["api-ingress"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "api"
    )
    (scrape,) = policies["trainer-ingress"]["ingress"]
    assert [p["port"] for p in scrape["ports"]] == [8001]
    assert all("namespaceSelector" in peer for peer in scrape["from"])
    egress = policies["app-egress"]
    assert egress["policyTypes"] == ["Egress"]
    ports = {p["port"] for rule in egress["egress"] for p in rule.get("ports", [])}
    assert {53, 9092, 6379} <= ports


def _kafka_version() -> str:
    pom = ElementTree.parse(REPO_ROOT / "scripts/kafka/pom.xml").getroot()
    version = pom.findtext(
        "m:properties/m:kafka.version", namespaces={"m": "http://maven.apache.org/POM/4.0.0"}
    )
    assert version is not None
    return version


def test_dev_runs_a_single_node_kraft_kafka(rendered: dict[str, Objects]) -> None:
    objects = rendered["dev"]
    assert not [o for o in objects if o["apiVersion"].startswith("kafka.strimzi.io/")]
    kafka = _one(objects, "StatefulSet", "kafka")
    assert kafka["spec"]["replicas"] == 1
    (container,) = kafka["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"apache/kafka:{_kafka_version()}"
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("kafka-config-")
    ]
    properties = dict(
        line.split("=", 1)
        for line in config["data"]["server.properties"].splitlines()
        if line and not line.startswith("#")
    )
    assert properties["process.roles"] == "broker,controller"
    assert properties["controller.listener.names"] in properties["listeners"]
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert properties[key] == "1", key
    settings = _settings(objects)
    assert properties["num.partitions"] == settings["RECSYS_KAFKA__PARTITIONS"]
    assert settings["RECSYS_KAFKA__REPLICATION_FACTOR"] == "1"
    host, port = settings["KAFKA_BOOTSTRAP_SERVERS"].split(":")
    service = _one(objects, "Service", host)
    assert service["spec"]["ports"][0]["port"] == int(port)
    data_dir = properties["log.dirs"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(PurePosixPath(data_dir).is_relative_to(m) for m in mounts)


@pytest.mark.parametrize("overlay", ["prod", "gpu", "scale-out"])
def test_prod_runs_kafka_through_strimzi(rendered: dict[str, Objects], overlay: str) -> None:
    objects = rendered[overlay]
    assert not _find(objects, "StatefulSet", "kafka")
    (kafka,) = _find(objects, "Kafka")
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
    cluster = kafka["metadata"]["name"]
    annotations = kafka["metadata"]["annotations"]
    assert annotations["strimzi.io/kraft"] == "enabled"
    assert annotations["strimzi.io/node-pools"] == "enabled"
    spec = kafka["spec"]["kafka"]
    assert spec["version"].startswith("3.9.")
    assert spec["metadataVersion"].startswith("3.9-")
    assert "zookeeper" not in kafka["spec"]
    listeners = {listener["name"]: listener for listener in spec["listeners"]}
    for listener in listeners.values():
        assert {"name", "port", "type", "tls"} <= listener.keys()
    settings = _settings(objects)
    plain = listeners["plain"]
    assert (plain["type"], plain["tls"]) == ("internal", False)
    assert settings["KAFKA_BOOTSTRAP_SERVERS"] == f"{cluster}-kafka-bootstrap:{plain['port']}"
    assert "topicOperator" in kafka["spec"]["entityOperator"]

    (pool,) = _find(objects, "KafkaNodePool")
    assert pool["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    replicas = pool["spec"]["replicas"]
    assert replicas >= 3
    storage = pool["spec"]["storage"]
    volumes = storage["volumes"] if storage["type"] == "jbod" else [storage]
    assert volumes
    for volume in volumes:
        assert volume["type"] == "persistent-claim"
        assert volume["size"]
    if storage["type"] == "jbod":
        assert [v.get("kraftMetadata") for v in volumes].count("shared") == 1

    factor = int(settings["RECSYS_KAFKA__REPLICATION_FACTOR"])
    assert 1 < factor <= replicas
    config = spec["config"]
    assert config["offsets.topic.replication.factor"] == factor
    assert config["transaction.state.log.replication.factor"] == factor
    assert config["min.insync.replicas"] < factor
    topics = {t["spec"]["topicName"]: t for t in _find(objects, "KafkaTopic")}
    stream = {settings["RECSYS_KAFKA__TOPIC"], settings["RECSYS_KAFKA__DEAD_LETTER_TOPIC"]}
    scales_out = settings.get("RECSYS_TRAINER__SCALE_OUT") == "true"
    updates = {settings["RECSYS_KAFKA__UPDATES_TOPIC"]} if scales_out else set()
    assert set(topics) == stream | updates
    for name, topic in topics.items():
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        if name in stream:
            assert topic["spec"]["partitions"] == int(settings["RECSYS_KAFKA__PARTITIONS"])
        assert topic["spec"]["replicas"] == factor


@pytest.mark.parametrize("overlay", ["prod", "gpu", "scale-out"])
def test_prod_is_scraped_through_service_monitors(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    monitors = _find(objects, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"trainer", "api"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [
            s
            for s in _find(objects, "Service")
            if selector.items() <= s["metadata"]["labels"].items()
        ]
        assert len(services) == 1, monitor["metadata"]["name"]
        port_names = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"


def test_the_gpu_overlay_puts_the_trainer_on_a_gpu(rendered: dict[str, Objects]) -> None:
    objects = rendered["gpu"]
    pod = _one(objects, "StatefulSet", "trainer")["spec"]["template"]["spec"]
    (trainer,) = pod["containers"]
    assert trainer["image"] == f"{APP_IMAGE}:{_project_version()}-cuda"
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _environment(trainer, objects)["RECSYS_LEARNER__DEVICE"] == "cuda"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    for workload, other in _pod_specs(objects):
        if workload["metadata"]["name"] != "trainer":
            for container in _containers(other):
                assert not container["image"].endswith("-cuda"), workload["metadata"]["name"]
                assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    for overlay in ("dev", "prod"):
        pod = _one(rendered[overlay], "StatefulSet", "trainer")["spec"]["template"]["spec"]
        assert (
            _environment(pod["containers"][0], rendered[overlay])["RECSYS_LEARNER__DEVICE"] == "cpu"
        )


def test_the_readme_names_every_overlay() -> None:
    readme = (REPO_ROOT / "k8s" / "README.md").read_text()
    for overlay in OVERLAYS:
        assert f"kubectl apply -k k8s/overlays/{overlay}" in readme, overlay
    assert "create secret generic recsys-api-key" in readme
    assert "--from-literal=api-key=$(openssl rand -hex 32)" in readme
