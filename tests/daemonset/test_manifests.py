"""The Kubernetes manifests in daemonset/: valid, consistent with each other, least privilege."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DAEMONSET = REPO / "daemonset"
BASE = DAEMONSET / "base"  # the manifests; daemonset/remediate/ is the overlay
REMEDIATE = DAEMONSET / "remediate"

# The oldest Kubernetes release the manifests promise to work on, and a newer one.
KUBERNETES_VERSIONS = ("1.30", "1.34")
NAMESPACE = "netagent"
PORT = 9465
# Files in daemonset/ that are YAML but not objects to apply.
NOT_RESOURCES = {"kustomization.yaml"}
# Objects of the Prometheus Operator's CRDs, which kubernetes-validate has no schema for.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def yaml_files() -> list[Path]:
    return sorted(BASE.glob("*.yaml"))


def load_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest_files() -> list[Path]:
    return [path for path in yaml_files() if path.name not in NOT_RESOURCES]


def objects() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object the kustomization applies."""
    return [(path.name, doc) for path in manifest_files() for doc in load_documents(path)]


def object_id(item: tuple[str, dict[str, Any]]) -> str:
    name, obj = item
    metadata = obj.get("metadata") or {}
    return f"{name}:{obj.get('kind')}/{metadata.get('name')}"


def only(kind: str) -> dict[str, Any]:
    found = [obj for _, obj in objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = only("DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.name)
def test_every_yaml_document_parses(path: Path) -> None:
    documents = load_documents(path)
    assert documents, f"{path.name} has no YAML document"
    assert all(isinstance(doc, dict) for doc in documents)


def test_every_manifest_is_a_kubernetes_object() -> None:
    for name, obj in objects():
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), name
        assert obj["metadata"].get("name"), name


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "item",
    [item for item in objects() if item[1].get("kind") not in CUSTOM_KINDS],
    ids=object_id,
)
def test_object_validates_against_kubernetes_schema(
    item: tuple[str, dict[str, Any]], version: str
) -> None:
    name, obj = item
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(part) for part in err.path)
        pytest.fail(f"{name}: {path}: {err.message} (Kubernetes {version})", pytrace=False)


@pytest.mark.parametrize(
    "item", [item for item in objects() if item[1].get("kind") in CUSTOM_KINDS], ids=object_id
)
def test_custom_resource_shape(item: tuple[str, dict[str, Any]]) -> None:
    name, obj = item
    assert obj["apiVersion"] == "monitoring.coreos.com/v1", name
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}, name
    assert obj["metadata"]["name"] == "netagent"
    assert obj["metadata"]["namespace"] == NAMESPACE
    assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "netagent"
    assert isinstance(obj["spec"], dict) and obj["spec"]


def test_namespaced_objects_live_in_the_netagent_namespace() -> None:
    for name, obj in objects():
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], name
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, name


def test_namespace_admits_the_privileged_pod() -> None:
    # hostNetwork, hostPID, hostPath and added capabilities are "privileged" level.
    labels = only("Namespace")["metadata"]["labels"]
    assert only("Namespace")["metadata"]["name"] == NAMESPACE
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


# --- DaemonSet ---------------------------------------------------------------------


def test_daemonset_runs_in_the_host_namespaces_on_every_node() -> None:
    pod = only("DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["hostPID"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["serviceAccountName"] == only("ServiceAccount")["metadata"]["name"]


def test_daemonset_selector_matches_its_pods() -> None:
    daemonset = only("DaemonSet")
    selector = daemonset["spec"]["selector"]["matchLabels"]
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_container_security_context_is_least_privilege() -> None:
    context = container()["securityContext"]
    assert context["runAsUser"] == 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert sorted(context["capabilities"]["add"]) == ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]


def test_every_added_capability_says_why() -> None:
    lines = (BASE / "daemonset.yaml").read_text().splitlines()
    for capability in container()["securityContext"]["capabilities"]["add"]:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {capability}")
        assert lines[index - 1].strip().startswith("#"), f"{capability} has no comment above it"


def test_container_command_line_and_image() -> None:
    spec = container()
    assert spec["args"] == [
        "run",
        "--listen",
        f"0.0.0.0:{PORT}",
        "--config",
        "/etc/netagent/config.yaml",
    ]
    version = re.search(
        r'^__version__ = "([^"]+)"', (REPO / "netagent" / "__init__.py").read_text(), re.M
    )
    assert version, "netagent/__init__.py has no __version__"
    assert spec["image"] == f"ghcr.io/netagent/netagent:{version.group(1)}"


def test_node_name_comes_from_the_downward_api() -> None:
    env = {item["name"]: item for item in container()["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_metrics_port_and_probes() -> None:
    spec = container()
    assert spec["ports"] == [{"name": "metrics", "containerPort": PORT, "protocol": "TCP"}]
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_resources() -> None:
    assert container()["resources"] == {
        "requests": {"cpu": "10m", "memory": "40Mi"},
        "limits": {"memory": "96Mi"},
    }


def test_volumes_and_mounts() -> None:
    pod = only("DaemonSet")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container()["volumeMounts"]}

    config = mounts["/etc/netagent"]
    assert config["readOnly"] is True
    assert volumes[config["name"]]["configMap"]["name"] == "netagent-config"

    netns = mounts["/run/netns"]
    assert netns["readOnly"] is True
    assert netns["mountPropagation"] == "HostToContainer"
    assert volumes[netns["name"]]["hostPath"]["path"] == "/run/netns"

    # The kubelet config's directory, so that a node without the file still starts the pod
    # (a hostPath of type File does not), and the configuration names the file inside it.
    kubelet = mounts["/host/kubelet"]
    assert kubelet["readOnly"] is True
    assert volumes[kubelet["name"]]["hostPath"] == {
        "path": "/var/lib/kubelet",
        "type": "DirectoryOrCreate",
    }
    settings = yaml.safe_load(only("ConfigMap")["data"]["config.yaml"])
    assert settings["dns"]["kubelet_config"] == "/host/kubelet/config.yaml"
    types = {v["hostPath"].get("type") for v in volumes.values() if "hostPath" in v}
    assert "File" not in types  # nothing that must exist on the node

    # Nothing else of the host is mounted, and nothing host-mounted is writable.
    host_paths = {v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v}
    assert host_paths == {"/run/netns", "/var/lib/kubelet"}
    for mount in mounts.values():
        if "hostPath" in volumes[mount["name"]]:
            assert mount["readOnly"] is True, mount["mountPath"]


def test_config_file_is_in_the_configmap() -> None:
    configmap = only("ConfigMap")
    assert configmap["metadata"]["name"] == "netagent-config"
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert config == {
        "agent": {"intervals": {"neighbours": 15, "conntrack": 15, "overlay": 15, "dns": 30,
                                "cluster": 30}},
        "dns": {"kubelet_config": "/host/kubelet/config.yaml"},
        "thresholds": {
            "neighbour": {"warning_ratio": 0.8, "critical_ratio": 0.95},
            "conntrack": {"warning_ratio": 0.75, "critical_ratio": 0.9},
        },
        "forecast": {"warning_seconds": 3600, "critical_seconds": 900},
        "kubernetes": {"heartbeat_seconds": 300, "event_namespace": "default"},
    }
    assert "example" in (BASE / "configmap.yaml").read_text().lower()


def test_example_config_is_valid_for_netagent(tmp_path: Path) -> None:
    from netagent.config import load

    path = tmp_path / "config.yaml"
    path.write_text(only("ConfigMap")["data"]["config.yaml"])
    config = load(path)  # raises ConfigError on any unknown key or bad value
    assert config.agent.intervals.dns == 30
    assert config.thresholds.conntrack.critical_ratio == 0.9


def test_example_thresholds_match_the_alerts() -> None:
    thresholds = yaml.safe_load(only("ConfigMap")["data"]["config.yaml"])["thresholds"]
    rules = yaml.safe_load((DAEMONSET / "alerts.yaml").read_text())["groups"][0]["rules"]
    expr = {rule["alert"]: rule["expr"] for rule in rules}
    pairs = {
        "NetagentNeighbourTableNearFull": thresholds["neighbour"]["warning_ratio"],
        "NetagentNeighbourTableFull": thresholds["neighbour"]["critical_ratio"],
        "NetagentConntrackNearFull": thresholds["conntrack"]["warning_ratio"],
        "NetagentConntrackFull": thresholds["conntrack"]["critical_ratio"],
    }
    for alert, ratio in pairs.items():
        threshold = re.compile(rf">\s*{re.escape(str(ratio))}(?![\d.])")
        assert threshold.search(expr[alert]), f"{alert} does not use the example ratio {ratio}"


def test_example_forecast_horizon_matches_the_filling_up_alerts() -> None:
    forecast = yaml.safe_load(only("ConfigMap")["data"]["config.yaml"])["forecast"]
    rules = yaml.safe_load((DAEMONSET / "alerts.yaml").read_text())["groups"][0]["rules"]
    expr = {rule["alert"]: rule["expr"] for rule in rules}
    for alert in ("NetagentNeighbourTableFillingUp", "NetagentConntrackTableFillingUp"):
        assert re.search(rf"_exhaustion_seconds < {forecast['warning_seconds']}$",
                         expr[alert]), f"{alert} does not use forecast.warning_seconds"


# --- RBAC ----------------------------------------------------------------------------


def test_cluster_role_grants_only_what_the_agent_uses() -> None:
    rules = only("ClusterRole")["rules"]
    granted = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "nodes/status", "patch"),
        ("", "events", "create"),
        ("", "events", "patch"),
    }
    assert all("resourceNames" not in rule and "nonResourceURLs" not in rule for rule in rules)


def test_cluster_role_binding_binds_the_agent() -> None:
    binding = only("ClusterRoleBinding")
    account = only("ServiceAccount")["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": only("ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


# --- Service and ServiceMonitor ------------------------------------------------------


def test_service_is_headless_and_selects_the_agent() -> None:
    service = only("Service")
    pod_labels = only("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_service_monitor_scrapes_the_service() -> None:
    monitor = only("ServiceMonitor")
    service = only("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["interval"] == "30s"
    # The alerts' NetagentAbsent selects job="netagent": the Service's name.
    assert service["metadata"]["name"] == "netagent"


# --- kustomization and image ---------------------------------------------------------


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return loaded


def test_kustomization_lists_every_manifest() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources)), "a resource is listed twice"
    assert set(resources) == {path.name for path in manifest_files()}
    assert "alerts.yaml" not in resources
    assert "dashboard.json" not in resources
    assert kustomization()["namespace"] == NAMESPACE


def test_kustomization_ships_the_dashboard_to_grafana() -> None:
    (generator,) = kustomization()["configMapGenerator"]
    files = [entry.split("=")[-1] for entry in generator["files"]]
    assert files == ["dashboard.json"]
    assert kustomization()["generatorOptions"]["labels"]["grafana_dashboard"] == "1"
    assert kustomization()["generatorOptions"]["disableNameSuffixHash"] is True


def test_kustomize_build() -> None:
    built = kustomize(DAEMONSET)
    kinds = sorted(doc["kind"] for doc in built)
    assert kinds == sorted(
        [obj["kind"] for _, obj in objects()] + ["ConfigMap"]  # + the dashboard
    )
    for obj in built:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[0], strict=True)


def test_containerfile() -> None:
    text = (DAEMONSET / "Containerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages and all(image == "python:3.11-slim" for image in stages)
    assert re.search(r"^USER 0$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["netagent"\]$', text, re.M)


# --- the remediation overlay (daemonset/remediate/) ----------------------------------------

def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: scripts/test installs Debian's kubernetes-client"
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rendered(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


REMEDIATION_MOUNTS = {"/host/proc/sys/net": "/proc/sys/net",
                      "/host/etc/sysctl.d": "/etc/sysctl.d",
                      "/var/lib/netagent": "/var/lib/netagent",
                      "/host/sys/module": "/sys/module"}


def test_the_overlay_renders_and_validates() -> None:
    docs = kustomize(REMEDIATE)
    assert sorted(d["kind"] for d in docs) == sorted(d["kind"] for d in kustomize(DAEMONSET))
    for obj in docs:
        if obj["kind"] not in CUSTOM_KINDS:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)


def test_the_overlay_adds_the_mounts_acting_needs_and_nothing_else() -> None:
    def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
        spec: dict[str, Any] = rendered(docs, "DaemonSet", "netagent")["spec"]["template"][
            "spec"]
        return spec

    base, acting = pod(kustomize(DAEMONSET)), pod(kustomize(REMEDIATE))
    (bc,), (ac,) = base["containers"], acting["containers"]
    assert ac["securityContext"] == bc["securityContext"]  # not privileged, same capabilities
    assert ac["securityContext"]["privileged"] is False
    added = [m for m in ac["volumeMounts"] if m not in bc["volumeMounts"]]
    volumes = {v["name"]: v for v in acting["volumes"]}
    assert {m["mountPath"]: volumes[m["name"]]["hostPath"]["path"] for m in added} == \
        REMEDIATION_MOUNTS
    assert all(not m.get("readOnly") for m in added)
    assert {k: v for k, v in ac.items() if k != "volumeMounts"} == \
        {k: v for k, v in bc.items() if k != "volumeMounts"}
    # the default manifests stay read-only: none of these host paths is mounted there
    base_paths = {v.get("hostPath", {}).get("path") for v in base["volumes"]}
    assert not base_paths & set(REMEDIATION_MOUNTS.values())


def test_every_overlay_mount_says_why() -> None:
    lines = (REMEDIATE / "daemonset-patch.yaml").read_text().splitlines()
    mounts = [i for i, line in enumerate(lines) if line.strip().startswith("- name:")
              and "mountPath" in lines[i + 1]]
    assert len(mounts) == len(REMEDIATION_MOUNTS)
    for i in mounts:
        assert lines[i - 1].strip().startswith("#"), lines[i]


def test_the_overlay_config_is_the_base_with_remediation_on(tmp_path: Path) -> None:
    from netagent.config import load

    def config_of(docs: list[dict[str, Any]]) -> Any:
        path = tmp_path / "config.yaml"
        path.write_text(rendered(docs, "ConfigMap", "netagent-config")["data"]["config.yaml"])
        return load(path)

    base, acting = config_of(kustomize(DAEMONSET)), config_of(kustomize(REMEDIATE))
    r = acting.remediation
    assert (r.mode, r.sysctl_root, r.module_root, r.persist_dir, r.state_dir) == (
        "apply", "/host/proc/sys", "/host/sys/module", "/host/etc/sysctl.d",
        "/var/lib/netagent")
    assert base.remediation.mode == "off"
    import dataclasses

    assert dataclasses.replace(acting, remediation=base.remediation) == base
    mounts = {m["mountPath"] for m in rendered(kustomize(REMEDIATE), "DaemonSet", "netagent")[
        "spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    for path in (r.sysctl_root + "/net", r.module_root, r.persist_dir, r.state_dir):
        assert path in mounts, path
