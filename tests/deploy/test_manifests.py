"""What `kubectl apply -k deploy/` and the Helm chart install, checked offline.

The kustomize build and the rendered chart (release name dgdr-controller) must install the same
objects with the same RBAC rules, pod security and probes; the API server's verdict on both is
tests/deploy/test_install.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.localplane.binaries import find_kubectl

from .tools import CERT_MANAGER, CHART, DEPLOY, MONITORING, helm, load_all, run

Obj = dict[str, Any]
Key = tuple[str, str, str]

EXPECTED: set[Key] = {
    ("Namespace", "", "dgdr-system"),
    ("CustomResourceDefinition", "", "dynamographdeploymentrequests.nvidia.com"),
    ("ServiceAccount", "dgdr-system", "dgdr-controller"),
    ("ClusterRole", "", "dgdr-controller"),
    ("ClusterRole", "", "dgdr-controller-nodes"),
    ("ClusterRoleBinding", "", "dgdr-controller"),
    ("ClusterRoleBinding", "", "dgdr-controller-nodes"),
    ("ClusterRole", "", "dgdr-controller-crd"),
    ("ClusterRoleBinding", "", "dgdr-controller-crd"),
    ("Role", "dgdr-system", "dgdr-controller-leader-election"),
    ("RoleBinding", "dgdr-system", "dgdr-controller-leader-election"),
    ("Role", "dgdr-system", "dgdr-controller-webhook-cert"),
    ("RoleBinding", "dgdr-system", "dgdr-controller-webhook-cert"),
    ("Role", "kube-system", "dgdr-controller-dynamo-operator-lease"),
    ("RoleBinding", "kube-system", "dgdr-controller-dynamo-operator-lease"),
    ("Deployment", "dgdr-system", "dgdr-controller"),
    ("PodDisruptionBudget", "dgdr-system", "dgdr-controller"),
    ("Service", "dgdr-system", "dgdr-controller-metrics"),
    ("Service", "dgdr-system", "dgdr-controller-webhook"),
    ("ConfigMap", "dgdr-system", "dgdr-controller-dashboard"),
}
# The webhook certificate's Secret is the controller's unless cert-manager issues it.
SELF_MANAGED_CERT_OBJECTS: set[Key] = {
    ("Role", "dgdr-system", "dgdr-controller-webhook-cert"),
    ("RoleBinding", "dgdr-system", "dgdr-controller-webhook-cert"),
}
# deploy/cert-manager/ (a kustomize component) and Helm webhook.certManager.enabled=true.
CERT_MANAGER_OBJECTS: set[Key] = {
    ("Issuer", "dgdr-system", "dgdr-controller-selfsigned"),
    ("Certificate", "dgdr-system", "dgdr-controller-webhook"),
}
# deploy/monitoring/, for clusters with the Prometheus Operator (applied after deploy/).
OPERATOR_OBJECTS: set[Key] = {
    ("ServiceMonitor", "dgdr-system", "dgdr-controller"),
    ("PrometheusRule", "dgdr-system", "dgdr-controller"),
}


def key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def by_key(objs: list[Obj]) -> dict[Key, Obj]:
    return {key(o): o for o in objs}


@pytest.fixture(scope="module")
def kustomized() -> dict[Key, Obj]:
    return by_key(load_all(run(str(find_kubectl()), "kustomize", str(DEPLOY))))


@pytest.fixture(scope="module")
def kustomized_monitoring() -> dict[Key, Obj]:
    return by_key(load_all(run(str(find_kubectl()), "kustomize", str(MONITORING))))


def cert_manager_overlay(folder: Path) -> Path:
    """What deploy/README.md tells a cluster admin with cert-manager to write: an overlay of
    deploy/ (outside it: kustomize refuses an overlay inside its base) using the component."""
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, folder)],
        "components": [os.path.relpath(CERT_MANAGER, folder)],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    return folder


@pytest.fixture(scope="module")
def kustomized_cert_manager(tmp_path_factory: pytest.TempPathFactory) -> dict[Key, Obj]:
    folder = cert_manager_overlay(tmp_path_factory.mktemp("cert-manager-overlay"))
    return by_key(load_all(run(str(find_kubectl()), "kustomize", str(folder))))


def render(
    *values: str,
    release: str = "dgdr-controller",
    namespace: str = "dgdr-system",
    flags: tuple[str, ...] = (),
) -> str:
    # No --kube-version: `helm template` must work with whatever Kubernetes version the helm at
    # hand assumes (a helm built from source says v1.20).
    args = [helm(), "template", release, str(CHART), "-n", namespace]
    for value in values:
        args += ["--set", value]
    return run(*args, *flags)


@pytest.fixture(scope="module")
def helmed() -> dict[Key, Obj]:
    # --include-crds: `helm install` applies crds/ first; `helm template` prints them only if asked
    return by_key(load_all(render("createNamespace=true", flags=("--include-crds",))))


def test_kustomize_builds_exactly_the_expected_objects(
    kustomized: dict[Key, Obj], kustomized_monitoring: dict[Key, Obj]
) -> None:
    assert set(kustomized) == EXPECTED
    assert set(kustomized_monitoring) == OPERATOR_OBJECTS


def test_base_and_default_chart_need_no_prometheus_operator(
    kustomized: dict[Key, Obj], helmed: dict[Key, Obj]
) -> None:
    """`kubectl apply -k deploy/` and `helm install` work on a cluster without the Prometheus
    Operator's CRDs: neither renders a monitoring.coreos.com object unless the API is there."""
    for objs in (kustomized, helmed):
        groups = {o["apiVersion"].split("/")[0] for o in objs.values()}
        assert "monitoring.coreos.com" not in groups
    with_api = by_key(load_all(render(flags=("--api-versions", "monitoring.coreos.com/v1"))))
    assert set(with_api) >= OPERATOR_OBJECTS
    forced = by_key(load_all(render("monitoring.enabled=true")))
    assert set(forced) >= OPERATOR_OBJECTS
    off = by_key(
        load_all(
            render("monitoring.enabled=false", flags=("--api-versions", "monitoring.coreos.com/v1"))
        )
    )
    assert not OPERATOR_OBJECTS & set(off)
    bad = subprocess.run(
        [helm(), "template", "x", str(CHART), "--set", "monitoring.enabled=maybe"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "monitoring.enabled must be auto, true or false" in bad.stderr
    crds = [k for k in kustomized if k[0] == "CustomResourceDefinition"]
    assert crds == [("CustomResourceDefinition", "", "dynamographdeploymentrequests.nvidia.com")]


def container(objs: dict[Key, Obj], name: str = "dgdr-controller") -> Obj:
    dep = objs[("Deployment", "dgdr-system", name)]
    (only,) = dep["spec"]["template"]["spec"]["containers"]
    result: Obj = only
    return result


def test_deployment_is_hardened_and_leader_elected(kustomized: dict[Key, Obj]) -> None:
    dep = kustomized[("Deployment", "dgdr-system", "dgdr-controller")]
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "dgdr-controller"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(kustomized)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "--leader-elect" in c["args"]
    assert "--lease-namespace=$(POD_NAMESPACE)" in c["args"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(c["resources"]) == {"requests", "limits"}
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
    assert env["POD_NAME"] == "metadata.name"
    assert env["POD_UID"] == "metadata.uid"
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # the image is named without a registry host
    first = c["image"].split("/")[0]
    assert "/" not in c["image"] or not any(ch in first for ch in ".:")


def test_monitoring_objects_carry_the_generated_files(
    kustomized: dict[Key, Obj], kustomized_monitoring: dict[Key, Obj]
) -> None:
    cm = kustomized[("ConfigMap", "dgdr-system", "dgdr-controller-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["dgdr-controller.json"]) == json.loads(
        (MONITORING / "dashboard.json").read_text()
    )
    rule = kustomized_monitoring[("PrometheusRule", "dgdr-system", "dgdr-controller")]
    assert rule["spec"] == yaml.safe_load((MONITORING / "rules.yaml").read_text())
    sm = kustomized_monitoring[("ServiceMonitor", "dgdr-system", "dgdr-controller")]
    svc = kustomized[("Service", "dgdr-system", "dgdr-controller-metrics")]
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    selector = sm["spec"]["selector"]["matchLabels"]
    assert selector.items() <= svc["metadata"]["labels"].items()
    # the job label the alerts select on comes from this Service label
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "dgdr-controller"


def test_service_selects_the_controller_pods(kustomized: dict[Key, Obj]) -> None:
    svc = kustomized[("Service", "dgdr-system", "dgdr-controller-metrics")]
    dep = kustomized[("Deployment", "dgdr-system", "dgdr-controller")]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_helm_lint() -> None:
    assert "0 chart(s) failed" in run(helm(), "lint", str(CHART))


def test_helm_renders_the_same_objects(
    kustomized: dict[Key, Obj], kustomized_monitoring: dict[Key, Obj], helmed: dict[Key, Obj]
) -> None:
    assert set(helmed) == set(kustomized)
    for k in kustomized:
        if k[0] in {"ClusterRole", "Role"}:
            assert helmed[k]["rules"] == kustomized[k]["rules"], k
        if k[0] in {"ClusterRoleBinding", "RoleBinding"}:
            assert helmed[k]["subjects"] == kustomized[k]["subjects"], k
            assert helmed[k]["roleRef"] == kustomized[k]["roleRef"], k
    assert helmed[k_crd()]["spec"] == kustomized[k_crd()]["spec"]
    h, c = container(helmed), container(kustomized)
    for field in ("image", "args", "env", "ports", "livenessProbe", "readinessProbe"):
        assert h[field] == c[field], field
    for field in ("resources", "securityContext", "volumeMounts"):
        assert h[field] == c[field], field
    hpod = helmed[("Deployment", "dgdr-system", "dgdr-controller")]["spec"]["template"]["spec"]
    kpod = kustomized[("Deployment", "dgdr-system", "dgdr-controller")]["spec"]["template"]["spec"]
    assert hpod["securityContext"] == kpod["securityContext"]
    assert hpod["volumes"] == kpod["volumes"]
    for k in kustomized:
        if k[0] == "Service":
            # selectors differ by design: Helm adds app.kubernetes.io/instance
            assert (
                kustomized[k]["spec"]["selector"].items() <= helmed[k]["spec"]["selector"].items()
            )
            hs = {f: v for f, v in helmed[k]["spec"].items() if f != "selector"}
            ks = {f: v for f, v in kustomized[k]["spec"].items() if f != "selector"}
            assert hs == ks, k
    with_operator = by_key(
        load_all(
            render(
                "createNamespace=true",
                flags=("--include-crds", "--api-versions", "monitoring.coreos.com/v1"),
            )
        )
    )
    assert set(with_operator) == set(kustomized) | set(kustomized_monitoring)
    for k in OPERATOR_OBJECTS:
        # selectors differ by design: Helm adds app.kubernetes.io/instance
        hs = {f: v for f, v in with_operator[k]["spec"].items() if f != "selector"}
        ks = {f: v for f, v in kustomized_monitoring[k]["spec"].items() if f != "selector"}
        assert hs == ks, k
    cm = ("ConfigMap", "dgdr-system", "dgdr-controller-dashboard")
    assert json.loads(helmed[cm]["data"]["dgdr-controller.json"]) == json.loads(
        kustomized[cm]["data"]["dgdr-controller.json"]
    )
    assert helmed[cm]["metadata"]["labels"]["grafana_dashboard"] == "1"


def k_crd() -> Key:
    return ("CustomResourceDefinition", "", "dynamographdeploymentrequests.nvidia.com")


def test_helm_values_change_what_they_say() -> None:
    objs = by_key(
        load_all(
            render(
                "image.repository=example/dgdr",
                "image.tag=9.9.9",
                "replicaCount=3",
                "watchNamespaces={team-a,team-b}",
                "monitoring.enabled=false",
                "monitoring.dashboard.enabled=false",
                "resources.limits.memory=2Gi",
                release="prod",
                namespace="ops",
            )
        )
    )
    kinds = {k[0] for k in objs}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap", "Namespace"}
    dep = objs[("Deployment", "ops", "prod-dgdr-controller")]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert dep["spec"]["replicas"] == 3
    assert c["image"] == "example/dgdr:9.9.9"
    assert c["resources"]["limits"]["memory"] == "2Gi"
    assert "--namespace=team-a" in c["args"] and "--namespace=team-b" in c["args"]
    assert "--lease-name=prod-dgdr-controller" in c["args"]
    # namespaced permissions only in the watched namespaces; nodes stay cluster-wide
    assert ("ClusterRoleBinding", "", "prod-dgdr-controller") not in objs
    assert ("ClusterRoleBinding", "", "prod-dgdr-controller-nodes") in objs
    for ns in ("team-a", "team-b"):
        rb = objs[("RoleBinding", ns, "prod-dgdr-controller")]
        assert rb["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "prod-dgdr-controller",
        }
        assert rb["subjects"] == [
            {"kind": "ServiceAccount", "name": "prod-dgdr-controller", "namespace": "ops"}
        ]


def test_helm_hugging_face_values_set_the_flags_and_the_one_readable_secret() -> None:
    objs = by_key(
        load_all(
            render("huggingface.tokenSecret=team-hf", "huggingface.endpoint=http://hub.local:8080")
        )
    )
    cfg = parse_controller_args(container(objs))
    assert (cfg.hf_token_secret, cfg.hf_endpoint) == ("team-hf", "http://hub.local:8080")
    rules = objs[("ClusterRole", "", "dgdr-controller")]["rules"]
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["team-hf"],
            "verbs": ["get"],
        }
    ]
    none = by_key(load_all(render("huggingface.tokenSecret=")))
    rules = none[("ClusterRole", "", "dgdr-controller")]["rules"]
    assert not [r for r in rules if "secrets" in r["resources"]]


def test_helm_without_leader_election_drops_the_lease_role() -> None:
    objs = by_key(load_all(render("leaderElection.enabled=false", "replicaCount=1")))
    assert ("Role", "dgdr-system", "dgdr-controller-leader-election") not in objs
    args = container(objs)["args"]
    assert "--leader-elect" not in args and "--no-leader-elect" in args


def parse_controller_args(c: Obj) -> Any:
    """The container's args through the controller's own flag parser (what the image runs)."""
    import argparse

    from controller import config

    parser = argparse.ArgumentParser(exit_on_error=False)
    config.add_arguments(parser)
    args = [a.replace("$(POD_NAMESPACE)", "dgdr-system") for a in c["args"]]
    return config.from_args(parser.parse_args(args))


def test_deployment_args_are_flags_the_controller_accepts(kustomized: dict[Key, Obj]) -> None:
    c = container(kustomized)
    cfg = parse_controller_args(c)
    assert cfg.leader_elect is True
    assert cfg.lease_namespace == "dgdr-system"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert cfg.ports() == (ports["probes"], ports["http-metrics"]) == (8081, 8080)
    # the conversion webhook, self-managed: the controller's own Secret, no mounted certificate
    assert cfg.webhook_port == ports["webhook"] == 9443
    assert cfg.webhook_namespace == "dgdr-system"
    assert cfg.webhook_service == "dgdr-controller-webhook"
    assert cfg.webhook_secret == "dgdr-controller-webhook-cert"
    assert not cfg.webhook_cert_dir and not cfg.webhook_inject_ca_from
    assert cfg.dynamo_operator_lease == "kube-system/dynamo.nvidia.com"
    assert cfg.allow_dynamo_operator is False
    assert cfg.warnings == []  # nothing deprecated
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "probes"
    svc = kustomized[("Service", "dgdr-system", "dgdr-controller-metrics")]
    assert svc["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert cfg.namespaces is None
    # the pool follows the CPU limit (the cgroup quota) instead of a number to keep in step
    assert not any(a.startswith("--pool-size") for a in c["args"])


def test_helm_args_are_flags_the_controller_accepts() -> None:
    objs = by_key(load_all(render("watchNamespaces={a,b}", "leaderElection.enabled=false")))
    cfg = parse_controller_args(container(objs))
    assert cfg.namespaces == ["a", "b"]
    assert cfg.leader_elect is False
    assert cfg.ports() == (8081, 8080) and cfg.warnings == []
    assert cfg.webhook_port == 9443
    sized = parse_controller_args(container(by_key(load_all(render("profilingPoolSize=3")))))
    assert sized.pool_size == 3


def test_kubectl_get_dgdr_is_narrow_and_both_crd_copies_agree() -> None:
    """The long column (the Succeeded message, often 150+ characters) is for -o wide only."""
    columns = []
    for path in (DEPLOY / "crds", CHART / "crds"):
        crd = yaml.safe_load((path / "nvidia.com_dynamographdeploymentrequests.yaml").read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
        columns.append(version["additionalPrinterColumns"])
    assert columns[0] == columns[1]
    wide_only = [c["name"] for c in columns[0] if c.get("priority", 0) >= 1]
    default = [c["name"] for c in columns[0] if c.get("priority", 0) == 0]
    assert wide_only == ["Message"]
    assert default == ["Model", "Backend", "Phase", "Profiling", "Reason", "DGD", "Age"]


# ---- the conversion webhook -------------------------------------------------------------------


def test_webhook_service_is_where_the_crd_sends_conversions(kustomized: dict[Key, Obj]) -> None:
    """The CRD's clientConfig names Service dgdr-system/dgdr-controller-webhook:443, which
    selects the controller pods and reaches their `webhook` container port."""
    svc = kustomized[("Service", "dgdr-system", "dgdr-controller-webhook")]
    dep = kustomized[("Deployment", "dgdr-system", "dgdr-controller")]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (443, "webhook")
    ports = {p["name"]: p["containerPort"] for p in container(kustomized)["ports"]}
    assert ports["webhook"] == 9443
    client = kustomized[k_crd()]["spec"]["conversion"]["webhook"]["clientConfig"]["service"]
    assert client == {
        "namespace": "dgdr-system",
        "name": "dgdr-controller-webhook",
        "path": "/convert",
        "port": 443,
    }
    # the base lets the controller manage the caBundle: no cert-manager annotation
    assert "cert-manager.io/inject-ca-from" not in (
        kustomized[k_crd()]["metadata"].get("annotations") or {}
    )


def rules(objs: dict[Key, Obj], kind: str, namespace: str, name: str) -> list[Obj]:
    found: list[Obj] = objs[(kind, namespace, name)]["rules"]
    return found


def binds_the_controller(objs: dict[Key, Obj], kind: str, namespace: str, name: str) -> bool:
    binding = objs[(f"{kind}Binding", namespace, name)]
    return bool(
        binding["roleRef"]
        == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": kind,
            "name": name,
        }
        and binding["subjects"]
        == [{"kind": "ServiceAccount", "name": "dgdr-controller", "namespace": "dgdr-system"}]
    )


def test_webhook_and_dynamo_lease_rbac_is_least_privilege(kustomized: dict[Key, Obj]) -> None:
    """One Secret by name (create cannot be named), one CRD by name, one Lease by name."""
    assert rules(kustomized, "Role", "dgdr-system", "dgdr-controller-webhook-cert") == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["dgdr-controller-webhook-cert"],
            "verbs": ["get", "update"],
        },
    ]
    assert rules(kustomized, "ClusterRole", "", "dgdr-controller-crd") == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": [k_crd()[2]],
            "verbs": ["get", "patch"],
        }
    ]
    assert rules(kustomized, "Role", "kube-system", "dgdr-controller-dynamo-operator-lease") == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["dynamo.nvidia.com"],
            "verbs": ["get"],
        }
    ]
    assert binds_the_controller(kustomized, "Role", "dgdr-system", "dgdr-controller-webhook-cert")
    assert binds_the_controller(kustomized, "ClusterRole", "", "dgdr-controller-crd")
    assert binds_the_controller(
        kustomized, "Role", "kube-system", "dgdr-controller-dynamo-operator-lease"
    )
    # and nothing else anywhere may touch CRDs or more Secrets
    for k, obj in kustomized.items():
        if k[0] not in {"ClusterRole", "Role"}:
            continue
        for rule in obj["rules"]:
            if "customresourcedefinitions" in rule["resources"]:
                assert k == ("ClusterRole", "", "dgdr-controller-crd"), k
            if "secrets" in rule["resources"] and k[2] != "dgdr-controller-webhook-cert":
                assert rule.get("resourceNames") == ["hf-token-secret"], k


def check_cert_manager_mode(objs: dict[Key, Obj], release: str, namespace: str) -> Any:
    """The Certificate's Secret is mounted read-only where --webhook-cert-dir points, it names
    the webhook Service, and the controller gets no Secret permission; the parsed config."""
    cert = objs[("Certificate", namespace, f"{release}-webhook")]
    issuer = objs[("Issuer", namespace, f"{release}-selfsigned")]
    assert issuer["spec"] == {"selfSigned": {}}
    assert cert["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    service = f"{release}-webhook"
    assert (("Service", namespace, service)) in objs
    assert f"{service}.{namespace}.svc" in cert["spec"]["dnsNames"]
    dep = objs[("Deployment", namespace, release)]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if m["name"] != "tmp"]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["secret"]["secretName"] == cert["spec"]["secretName"]
    assert f"--webhook-cert-dir={mount['mountPath']}" in c["args"]
    # no Secret may be created, and none read but the Hugging Face token
    assert not any(k[2].endswith("-webhook-cert") for k in objs)
    for k, obj in objs.items():
        for rule in obj["rules"] if k[0] in {"Role", "ClusterRole"} else ():
            if "secrets" in rule["resources"]:
                assert (rule["verbs"], rule.get("resourceNames")) == (["get"], ["hf-token-secret"])
    cfg = parse_controller_args(c)
    assert cfg.webhook_cert_dir == mount["mountPath"]
    assert cfg.webhook_port == 9443
    return cfg


def test_cert_manager_component(
    kustomized: dict[Key, Obj], kustomized_cert_manager: dict[Key, Obj]
) -> None:
    objs = kustomized_cert_manager
    assert set(objs) == (set(kustomized) - SELF_MANAGED_CERT_OBJECTS) | CERT_MANAGER_OBJECTS
    cfg = check_cert_manager_mode(objs, "dgdr-controller", "dgdr-system")
    # the component annotates the CRD itself (kustomize can), so no --webhook-inject-ca-from
    assert not cfg.webhook_inject_ca_from
    annotations = objs[k_crd()]["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == "dgdr-system/dgdr-controller-webhook"
    # everything else as in the base
    assert objs[k_crd()]["spec"] == kustomized[k_crd()]["spec"]
    base, cm = container(kustomized), container(objs)
    assert cm["args"][:-1] == base["args"]
    assert cm["volumeMounts"][:-1] == base["volumeMounts"]


def test_helm_cert_manager_renders_what_the_component_does(
    kustomized_cert_manager: dict[Key, Obj],
) -> None:
    objs = by_key(
        load_all(
            render(
                "createNamespace=true",
                "webhook.certManager.enabled=true",
                flags=("--include-crds",),
            )
        )
    )
    assert set(objs) == set(kustomized_cert_manager)
    cfg = check_cert_manager_mode(objs, "dgdr-controller", "dgdr-system")
    # crds/ cannot be templated: the controller sets the annotation on the CRD at start
    assert cfg.webhook_inject_ca_from == "dgdr-system/dgdr-controller-webhook"
    for k in CERT_MANAGER_OBJECTS:
        assert objs[k]["spec"] == kustomized_cert_manager[k]["spec"], k
    h, c = container(objs), container(kustomized_cert_manager)
    assert [a for a in h["args"] if not a.startswith("--webhook-inject-ca-from=")] == c["args"]
    assert h["volumeMounts"] == c["volumeMounts"]
    hpod = objs[("Deployment", "dgdr-system", "dgdr-controller")]["spec"]["template"]["spec"]
    kpod = kustomized_cert_manager[("Deployment", "dgdr-system", "dgdr-controller")]["spec"][
        "template"
    ]["spec"]
    assert hpod["volumes"] == kpod["volumes"]
    # another release and namespace: every name follows
    other = by_key(
        load_all(render("webhook.certManager.enabled=true", release="prod", namespace="ops"))
    )
    cfg = check_cert_manager_mode(other, "prod-dgdr-controller", "ops")
    assert cfg.webhook_inject_ca_from == "ops/prod-dgdr-controller-webhook"
    assert cfg.webhook_service == "prod-dgdr-controller-webhook"


def test_helm_webhook_and_lease_values() -> None:
    # another release: its own Service and Secret, passed to the controller and named in RBAC
    objs = by_key(load_all(render(release="prod", namespace="ops")))
    cfg = parse_controller_args(container_of(objs, "ops", "prod-dgdr-controller"))
    assert (cfg.webhook_service, cfg.webhook_secret) == (
        "prod-dgdr-controller-webhook",
        "prod-dgdr-controller-webhook-cert",
    )
    assert ("Service", "ops", "prod-dgdr-controller-webhook") in objs
    (named,) = [r for r in rules(objs, "Role", "ops", "prod-dgdr-controller-webhook-cert")
                if r.get("resourceNames")]  # fmt: skip
    assert named["resourceNames"] == ["prod-dgdr-controller-webhook-cert"]
    assert ("ClusterRoleBinding", "", "prod-dgdr-controller-crd") in objs
    # namespace-scoped install: the CRD stays reachable (a cluster-wide binding of its own)
    scoped = by_key(load_all(render("watchNamespaces={a}")))
    assert ("ClusterRoleBinding", "", "dgdr-controller-crd") in scoped
    # webhook.secretName
    objs = by_key(load_all(render("webhook.secretName=my-cert", "webhook.port=9444")))
    c = container(objs)
    cfg = parse_controller_args(c)
    assert (cfg.webhook_secret, cfg.webhook_port) == ("my-cert", 9444)
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["webhook"] == 9444
    (named,) = [r for r in rules(objs, "Role", "dgdr-system", "dgdr-controller-webhook-cert")
                if r.get("resourceNames")]  # fmt: skip
    assert named["resourceNames"] == ["my-cert"]
    # dynamoOperatorLease: another Lease is read (and only it may be), "" creates no Role
    objs = by_key(load_all(render("dynamoOperatorLease=dynamo/dynamo.nvidia.com")))
    assert parse_controller_args(container(objs)).dynamo_operator_lease == (
        "dynamo/dynamo.nvidia.com"
    )
    assert rules(objs, "Role", "dynamo", "dgdr-controller-dynamo-operator-lease")[0][
        "resourceNames"
    ] == ["dynamo.nvidia.com"]
    assert ("Role", "kube-system", "dgdr-controller-dynamo-operator-lease") not in objs
    default_args = container(by_key(load_all(render())))["args"]
    none = by_key(load_all(render("dynamoOperatorLease=")))
    assert not [k for k in none if k[2].endswith("dynamo-operator-lease")]
    assert container(none)["args"] == default_args
    bad = subprocess.run(
        [helm(), "template", "x", str(CHART), "--set", "dynamoOperatorLease=dynamo.nvidia.com"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "dynamoOperatorLease must be namespace/name" in bad.stderr


def container_of(objs: dict[Key, Obj], namespace: str, name: str) -> Obj:
    (c,) = objs[("Deployment", namespace, name)]["spec"]["template"]["spec"]["containers"]
    result: Obj = c
    return result
