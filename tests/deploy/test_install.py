"""The real API server accepts what a cluster admin installs, and RBAC grants exactly what the
controller needs.

The cluster has no Prometheus Operator, so the module first installs test-only stand-in CRDs
for ServiceMonitor and PrometheusRule (tests/deploy/data/monitoring-crds.yaml). The controller's
namespace is created for real: a server-side dry run of namespaced objects needs it to exist.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devtools.localplane import LocalControlPlane
from tests.conftest import Kubectl, make_kubectl

from .tools import CHART, DATA, DEPLOY, helm, run

pytestmark = pytest.mark.cluster

SYSTEM_NS = "dgdr-system"
SA = "dgdr-controller"

# What the controller's ServiceAccount may do in a DGDR namespace: (resource[names], verbs);
# cluster-wide grants (nodes, the DGDR CRD) are listed in every namespace.
NAMESPACED_GRANTS = {
    "dynamographdeploymentrequests.nvidia.com": {"get", "list", "watch", "patch"},
    "dynamographdeploymentrequests.nvidia.com/status": {"update"},
    "dynamographdeploymentrequests.nvidia.com/finalizers": {"update"},
    "dynamographdeployments.nvidia.com": {"get", "list", "watch", "create", "patch", "delete"},
    "configmaps": {"get", "create", "patch", "delete"},
    "persistentvolumeclaims": {"get"},
    "pods": {"list", "watch"},
    "secrets[hf-token-secret]": {"get"},
    "events": {"create", "patch"},
    "events.events.k8s.io": {"create", "patch"},
    "nodes": {"list", "watch"},
    # the conversion webhook: the CRD's clientConfig and caBundle
    "customresourcedefinitions.apiextensions.k8s.io[dynamographdeploymentrequests.nvidia.com]": {
        "get",
        "patch",
    },
}
# ...in its own namespace, the leader-election Lease and the webhook certificate's Secret on top
# (create cannot be limited by name; the Secret itself is read and rotated by name only)...
SYSTEM_GRANTS = {
    **NAMESPACED_GRANTS,
    "leases.coordination.k8s.io": {"get", "list", "watch", "create", "update"},
    "secrets": {"create"},
    "secrets[dgdr-controller-webhook-cert]": {"get", "update"},
}
# ...and in kube-system, the Dynamo operator's Lease, read only.
KUBE_SYSTEM_GRANTS = {
    **NAMESPACED_GRANTS,
    "leases.coordination.k8s.io[dynamo.nvidia.com]": {"get"},
}


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "-f", str(DATA / "monitoring-crds.yaml"))
    for name in ("servicemonitors", "prometheusrules"):
        kubectl(
            "wait", "--for=condition=Established", f"crd/{name}.monitoring.coreos.com",
            "--timeout=60s",
        )  # fmt: skip


@pytest.fixture(scope="module")
def cert_manager_crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "-f", str(DATA / "cert-manager-crds.yaml"))
    for name in ("issuers", "certificates"):
        kubectl(
            "wait", "--for=condition=Established", f"crd/{name}.cert-manager.io", "--timeout=60s",
        )  # fmt: skip


@pytest.fixture(scope="module")
def system_namespace(kubectl: Kubectl) -> str:
    kubectl("apply", "--server-side", "-f", str(DEPLOY / "controller" / "namespace.yaml"))
    return SYSTEM_NS


def dry_run(kubectl: Kubectl, *source: str, input: str | None = None) -> list[str]:
    """Server-side dry run; any warning (e.g. PodSecurity "restricted") fails the test."""
    res = kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=dgdr-install-test",
        *source, input=input,
    )  # fmt: skip
    assert "Warning" not in res.stderr, res.stderr
    return [line for line in res.stdout.splitlines() if line.strip()]


def patched_base(tmp_path: Path, *ops: dict[str, object]) -> str:
    """An overlay of deploy/ with JSON-patch operations on the Deployment; its folder."""
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, tmp_path)],
        "patches": [
            {
                "target": {"kind": "Deployment", "name": "dgdr-controller"},
                "patch": yaml.safe_dump(list(ops)),
            }
        ],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    return str(tmp_path)


def test_kustomize_base_accepted_by_the_api_server(
    kubectl: Kubectl, monitoring_crds: None, system_namespace: str
) -> None:
    lines = dry_run(kubectl, "-k", str(DEPLOY))
    assert all(line.endswith("(server dry run)") for line in lines), lines
    objects = {line.split()[0] for line in lines}
    for expected in (
        "namespace/dgdr-system",
        "customresourcedefinition.apiextensions.k8s.io/dynamographdeploymentrequests.nvidia.com",
        "serviceaccount/dgdr-controller",
        "clusterrole.rbac.authorization.k8s.io/dgdr-controller",
        "role.rbac.authorization.k8s.io/dgdr-controller-leader-election",
        "deployment.apps/dgdr-controller",
        "service/dgdr-controller-metrics",
        "service/dgdr-controller-webhook",
        "clusterrole.rbac.authorization.k8s.io/dgdr-controller-crd",
        "role.rbac.authorization.k8s.io/dgdr-controller-webhook-cert",
        "role.rbac.authorization.k8s.io/dgdr-controller-dynamo-operator-lease",
        "configmap/dgdr-controller-dashboard",
    ):
        assert expected in objects, (expected, lines)
    assert len(lines) == 20
    # With the Prometheus Operator's CRDs, deploy/monitoring/ on top.
    lines = dry_run(kubectl, "-k", str(DEPLOY / "monitoring"))
    assert {line.split()[0] for line in lines} == {
        "servicemonitor.monitoring.coreos.com/dgdr-controller",
        "prometheusrule.monitoring.coreos.com/dgdr-controller",
    }


def test_dry_run_rejects_an_invalid_deployment(
    kubectl: Kubectl, monitoring_crds: None, system_namespace: str, tmp_path: Path
) -> None:
    """The check above has teeth: the same base with a bad port is refused by the server."""
    port = "/spec/template/spec/containers/0/ports/0/containerPort"
    base = patched_base(tmp_path, {"op": "replace", "path": port, "value": 70000})
    res = kubectl("apply", "--server-side", "--dry-run=server", "-k", base, check=False)
    assert res.returncode != 0
    assert "containerPort" in res.stderr


def test_pod_security_restricted_is_enforced_on_the_deployment(
    kubectl: Kubectl, monitoring_crds: None, system_namespace: str, tmp_path: Path
) -> None:
    """The namespace warns on PodSecurity "restricted": a container keeping its capabilities
    is reported, which is what the warning-free dry runs above rule out."""
    caps = "/spec/template/spec/containers/0/securityContext/capabilities"
    base = patched_base(tmp_path, {"op": "remove", "path": caps})
    res = kubectl("apply", "--server-side", "--dry-run=server", "-k", base)
    assert 'would violate PodSecurity "restricted' in res.stderr
    assert "capabilities" in res.stderr


def render_chart(*values: str) -> str:
    args = [helm(), "template", "dgdr-controller", str(CHART), "-n", SYSTEM_NS]
    # The cluster here has the monitoring CRDs: tell `helm template` (helm install would see it).
    args += ["--api-versions", "monitoring.coreos.com/v1", "--include-crds"]
    for value in values:
        args += ["--set", value]
    return run(*args)


def test_helm_chart_accepted_by_the_api_server(
    kubectl: Kubectl, monitoring_crds: None, system_namespace: str
) -> None:
    lines = dry_run(kubectl, "-f", "-", input=render_chart())
    assert all(line.endswith("(server dry run)") for line in lines), lines
    assert len(lines) == 21  # the kustomize set without the Namespace (Helm's -n creates it)


def test_cert_manager_component_and_values_accepted(
    kubectl: Kubectl,
    monitoring_crds: None,
    cert_manager_crds: None,
    system_namespace: str,
    tmp_path: Path,
) -> None:
    """deploy/ with the deploy/cert-manager/ component, and the chart with
    webhook.certManager.enabled: the Issuer and Certificate, the Deployment mounting its Secret
    (still PodSecurity restricted), the CRD annotated; no Role for the controller's own Secret."""
    from .test_manifests import cert_manager_overlay

    lines = dry_run(kubectl, "-k", str(cert_manager_overlay(tmp_path)))
    assert all(line.endswith("(server dry run)") for line in lines), lines
    objects = {line.split()[0] for line in lines}
    assert {
        "issuer.cert-manager.io/dgdr-controller-selfsigned",
        "certificate.cert-manager.io/dgdr-controller-webhook",
        "deployment.apps/dgdr-controller",
    } <= objects
    assert "role.rbac.authorization.k8s.io/dgdr-controller-webhook-cert" not in objects
    assert len(lines) == 20  # the base's 20, two Role(Binding)s fewer, Issuer and Certificate
    lines = dry_run(kubectl, "-f", "-", input=render_chart("webhook.certManager.enabled=true"))
    assert all(line.endswith("(server dry run)") for line in lines), lines
    assert len(lines) == 21
    assert "certificate.cert-manager.io/dgdr-controller-webhook" in {x.split()[0] for x in lines}


def test_helm_chart_namespaced_mode_accepted(
    kubectl: Kubectl, monitoring_crds: None, system_namespace: str, namespace: str
) -> None:
    other = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", other)
    try:
        manifest = render_chart(
            f"watchNamespaces={{{namespace},{other}}}", "monitoring.enabled=false"
        )
        lines = dry_run(kubectl, "-f", "-", input=manifest)
    finally:
        kubectl("delete", "namespace", other, "--wait=false", check=False)
    rolebindings = [line for line in lines if line.startswith("rolebinding")]
    # two watched namespaces, the Lease, the webhook's Secret, the Dynamo operator's Lease
    assert len(rolebindings) == 5
    assert not any("servicemonitor" in line for line in lines)


# ---- RBAC -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed_rbac(kubectl: Kubectl, system_namespace: str, crds: list[str]) -> None:
    """The ServiceAccount and its roles, applied for real (the rest of deploy/ is not needed)."""
    for name in ("serviceaccount.yaml", "rbac.yaml"):
        kubectl("apply", "--server-side", "-f", str(DEPLOY / "controller" / name))
    # an account with no bindings: what every account may do anyway (discovery, self-reviews)
    kubectl("create", "serviceaccount", "dgdr-baseline", "-n", SYSTEM_NS, check=False)


def sa_kubectl(
    control_plane: LocalControlPlane, kubectl: Kubectl, account: str, tmp: Path
) -> Kubectl:
    """kubectl authenticated with the account's own token (TokenRequest), not impersonation."""
    token = kubectl("create", "token", account, "-n", SYSTEM_NS, "--duration=1h").stdout.strip()
    cfg = control_plane.kubeconfig_for_token(token, tmp / f"{account}.kubeconfig", user=account)
    return make_kubectl(control_plane, cfg)


@pytest.fixture(scope="module")
def as_controller(
    control_plane: LocalControlPlane,
    kubectl: Kubectl,
    installed_rbac: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Kubectl, Kubectl]]:
    tmp = tmp_path_factory.mktemp("sa")
    yield (
        sa_kubectl(control_plane, kubectl, SA, tmp),
        sa_kubectl(control_plane, kubectl, "dgdr-baseline", tmp),
    )


ROW = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]$")


def grants(kubectl_as: Kubectl, namespace: str) -> dict[tuple[str, str, str], set[str]]:
    """`kubectl auth can-i --list` as a map (resource, non-resource URLs, names) -> verbs."""
    out = kubectl_as("auth", "can-i", "--list", "-n", namespace).stdout
    rows: dict[tuple[str, str, str], set[str]] = {}
    for line in out.splitlines()[1:]:
        match = ROW.match(line.strip())
        if match is None:
            # resource-less rows (non-resource URLs) start with the empty resource column
            parts = re.findall(r"\[(.*?)\]", line)
            assert len(parts) == 3, f"unparsed can-i row: {line!r}"
            resource, urls, names, verbs = "", parts[0], parts[1], parts[2]
        else:
            resource, urls, names, verbs = match.groups()
        rows.setdefault((resource, urls, names), set()).update(verbs.split())
    return rows


def extra_grants(
    mine: dict[tuple[str, str, str], set[str]], base: dict[tuple[str, str, str], set[str]]
) -> dict[str, set[str]]:
    extra: dict[str, set[str]] = {}
    for (resource, urls, names), verbs in mine.items():
        more = verbs - base.get((resource, urls, names), set())
        if more:
            assert not urls, f"unexpected grant {resource} {urls} {names} {more}"
            extra[f"{resource}[{names}]" if names else resource] = more
    return extra


def test_service_account_can_do_exactly_what_it_needs(
    as_controller: tuple[Kubectl, Kubectl], namespace: str
) -> None:
    mine, baseline = as_controller
    assert extra_grants(grants(mine, namespace), grants(baseline, namespace)) == NAMESPACED_GRANTS
    assert extra_grants(grants(mine, SYSTEM_NS), grants(baseline, SYSTEM_NS)) == SYSTEM_GRANTS
    kube_system = extra_grants(grants(mine, "kube-system"), grants(baseline, "kube-system"))
    assert kube_system == KUBE_SYSTEM_GRANTS


@pytest.mark.parametrize(
    ("verb", "resource", "where", "allowed"),
    [
        ("list", "dynamographdeploymentrequests.nvidia.com", "--all-namespaces", "yes"),
        ("create", "dynamographdeploymentrequests.nvidia.com", "-n=default", "no"),
        ("delete", "dynamographdeploymentrequests.nvidia.com", "-n=default", "no"),
        ("delete", "dynamographdeployments.nvidia.com", "-n=default", "yes"),  # thorough
        ("update", "dynamographdeployments.nvidia.com", "-n=default", "no"),
        ("create", "dynamographdeployments.nvidia.com", "-n=default", "yes"),
        ("delete", "configmaps", "-n=default", "yes"),  # the sweep's state
        ("get", "secrets", "-n=default", "no"),
        ("get", "secrets/hf-token-secret", "-n=default", "yes"),
        ("get", "secrets/another-secret", "-n=default", "no"),
        ("list", "secrets", "-n=default", "no"),
        ("list", "pods", "-n=default", "yes"),
        ("watch", "pods", "-n=default", "yes"),
        ("get", "pods", "-n=default", "no"),
        ("delete", "pods", "-n=default", "no"),
        ("update", "leases.coordination.k8s.io", f"-n={SYSTEM_NS}", "yes"),
        ("update", "leases.coordination.k8s.io", "-n=default", "no"),
        ("delete", "leases.coordination.k8s.io", f"-n={SYSTEM_NS}", "no"),
        # the webhook certificate: one Secret, in the controller's namespace only
        ("create", "secrets", f"-n={SYSTEM_NS}", "yes"),
        ("create", "secrets", "-n=default", "no"),
        ("get", "secrets/dgdr-controller-webhook-cert", f"-n={SYSTEM_NS}", "yes"),
        ("update", "secrets/dgdr-controller-webhook-cert", f"-n={SYSTEM_NS}", "yes"),
        ("get", "secrets/dgdr-controller-webhook-cert", "-n=default", "no"),
        ("get", "secrets/another-secret", f"-n={SYSTEM_NS}", "no"),
        ("update", "secrets/another-secret", f"-n={SYSTEM_NS}", "no"),
        ("patch", "secrets/dgdr-controller-webhook-cert", f"-n={SYSTEM_NS}", "no"),
        ("delete", "secrets/dgdr-controller-webhook-cert", f"-n={SYSTEM_NS}", "no"),
        ("list", "secrets", f"-n={SYSTEM_NS}", "no"),
        ("watch", "secrets", f"-n={SYSTEM_NS}", "no"),
        # the DGDR CRD: get and patch, no other CRD, no update, delete or list
        ("get", "crd/dynamographdeploymentrequests.nvidia.com", "", "yes"),
        ("patch", "crd/dynamographdeploymentrequests.nvidia.com", "", "yes"),
        ("update", "crd/dynamographdeploymentrequests.nvidia.com", "", "no"),
        ("delete", "crd/dynamographdeploymentrequests.nvidia.com", "", "no"),
        ("patch", "crd/dynamographdeployments.nvidia.com", "", "no"),
        ("get", "crd/servicemonitors.monitoring.coreos.com", "", "no"),
        ("list", "crd", "", "no"),
        ("create", "crd", "", "no"),
        # the Dynamo operator's Lease: read that one, nothing else in kube-system
        ("get", "leases.coordination.k8s.io/dynamo.nvidia.com", "-n=kube-system", "yes"),
        ("update", "leases.coordination.k8s.io/dynamo.nvidia.com", "-n=kube-system", "no"),
        ("get", "leases.coordination.k8s.io/kube-scheduler", "-n=kube-system", "no"),
        ("list", "leases.coordination.k8s.io", "-n=kube-system", "no"),
        ("get", "secrets/dgdr-controller-webhook-cert", "-n=kube-system", "no"),
    ],
)
def test_service_account_spot_checks(
    as_controller: tuple[Kubectl, Kubectl], verb: str, resource: str, where: str, allowed: str
) -> None:
    mine, _ = as_controller
    res = mine("auth", "can-i", verb, resource, *([where] if where else []), check=False)
    assert res.stdout.strip() == allowed, (verb, resource, where, res.stdout, res.stderr)


def test_service_account_token_reads_dgdrs(
    as_controller: tuple[Kubectl, Kubectl], kubectl: Kubectl, namespace: str
) -> None:
    """A real request with the account's token, and a refused one."""
    mine, _ = as_controller
    body = {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeploymentRequest",
        "metadata": {"name": "rbac-probe", "namespace": namespace},
        "spec": {"model": "Qwen/Qwen3-0.6B"},
    }
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(body))
    names = mine("get", "dgdr", "-n", namespace, "-o", "name").stdout.split()
    assert names == ["dynamographdeploymentrequest.nvidia.com/rbac-probe"]
    refused = mine("delete", "dgdr", "rbac-probe", "-n", namespace, check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    denied = mine("get", "secrets", "-n", namespace, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_kubectl_is_the_real_one(kubectl: Kubectl) -> None:
    """Guards the parsing above against a kubectl whose can-i table changed shape."""
    out = kubectl("auth", "can-i", "--list", "-n", "default").stdout.splitlines()
    assert out[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]


# ---- the controller on its own ServiceAccount token ------------------------------------------


def test_controller_completes_a_lifecycle_with_its_own_token(
    control_plane: LocalControlPlane,
    kubectl: Kubectl,
    installed_rbac: None,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Least privilege is also enough privilege: no admin credentials anywhere in the loop."""
    from tests.dgdr.conftest import ControllerProcess, get_json, wait_phase

    token = kubectl("create", "token", SA, "-n", SYSTEM_NS, "--duration=1h").stdout.strip()
    cfg = control_plane.kubeconfig_for_token(token, tmp_path / "sa.kubeconfig", user=SA)
    proc = ControllerProcess(
        control_plane,
        tmp_path,
        "--namespace", namespace,
        "--lease-namespace", SYSTEM_NS,
        "--lease-name", f"dgdr-sa-{namespace}",
        kubeconfig=cfg,
    )  # fmt: skip
    try:
        proc.wait_ready()
        hardware = {"gpuSku": "h100_sxm", "numGpusPerNode": 8, "totalGpus": 8}
        for name, extra in (("served", {}), ("review", {"autoApply": False})):
            body = {
                "apiVersion": "nvidia.com/v1beta1",
                "kind": "DynamoGraphDeploymentRequest",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"model": "Qwen/Qwen3-0.6B", "hardware": hardware, **extra},
            }
            kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(body))
        wait_phase(kubectl, "review", namespace, "Ready")
        served = wait_phase(kubectl, "served", namespace, "Deploying")
        dgd_name = served["status"]["dgdName"]
        dgd = get_json(kubectl, "dgd", dgd_name, namespace)
        services = {s: {"replicas": 1, "availableReplicas": 1} for s in dgd["spec"]["services"]}
        kubectl(
            "patch", "dgd", dgd_name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"state": "successful", "services": services}}),
            namespace=namespace,
        )  # fmt: skip
        wait_phase(kubectl, "served", namespace, "Deployed")
        # deletion runs the finalizer with the same token
        kubectl("delete", "dgdr", "review", "--wait=true", "--timeout=30s", namespace=namespace)
        events = kubectl("get", "events", "-o", "name", namespace=namespace).stdout
        assert events.strip(), "the controller recorded events with its own token"
        lease = kubectl("get", "lease", f"dgdr-sa-{namespace}", "-n", SYSTEM_NS, "-o", "json")
        assert json.loads(lease.stdout)["spec"]["holderIdentity"] == proc.identity
    finally:
        proc.stop()
    log = proc.log_path.read_text(errors="replace")
    assert not re.search(r"\b403\b|forbidden", log, re.IGNORECASE), proc.tail()


def test_controller_keeps_its_webhook_certificate_with_its_own_token(
    control_plane: LocalControlPlane,
    kubectl: Kubectl,
    installed_rbac: None,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The webhook's self-managed certificate on the account's token, as the Deployment runs it
    (--webhook-namespace dgdr-system, the default Service and Secret names): the Secret is
    created, the CRD's caBundle patched, /readyz passes, and nothing is refused."""
    import base64
    import socket
    import ssl

    from devtools.localplane import free_port
    from tests.dgdr.conftest import ControllerProcess

    secret, crd = "dgdr-controller-webhook-cert", "dynamographdeploymentrequests.nvidia.com"
    kubectl("delete", "secret", secret, "-n", SYSTEM_NS, "--ignore-not-found")
    token = kubectl("create", "token", SA, "-n", SYSTEM_NS, "--duration=1h").stdout.strip()
    cfg = control_plane.kubeconfig_for_token(token, tmp_path / "sa.kubeconfig", user=SA)
    port = free_port()
    proc = ControllerProcess(
        control_plane,
        tmp_path,
        "--lease-namespace", SYSTEM_NS,
        "--lease-name", "dgdr-sa-webhook",
        "--namespace", namespace,  # not other tests' DGDRs (in namespaces being deleted)
        "--webhook-port", str(port),
        "--webhook-namespace", SYSTEM_NS,
        kubeconfig=cfg,
    )  # fmt: skip
    try:
        proc.wait_ready()  # the certificate loaded, the CRD pointed at the Service, caBundle set
        data = json.loads(kubectl("get", "secret", secret, "-n", SYSTEM_NS, "-o", "json").stdout)
        assert {"ca.crt", "ca.key", "tls.crt", "tls.key"} <= set(data["data"])
        ca = base64.b64decode(data["data"]["ca.crt"]).decode()
        got = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)
        client = got["spec"]["conversion"]["webhook"]["clientConfig"]
        assert client["service"]["namespace"] == SYSTEM_NS
        assert client["service"]["name"] == "dgdr-controller-webhook"
        assert ca.strip() in base64.b64decode(client["caBundle"]).decode()
        # the served certificate is trusted through that CA for the Service's name
        context = ssl.create_default_context(cadata=ca)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            context.wrap_socket(
                sock, server_hostname="dgdr-controller-webhook.dgdr-system.svc"
            ) as tls,
        ):
            assert tls.getpeercert() is not None
    finally:
        proc.stop()
        kubectl("delete", "secret", secret, "-n", SYSTEM_NS, "--ignore-not-found", check=False)
        kubectl(
            "patch", "crd", crd, "--type=json",
            "-p", '[{"op": "remove", "path": "/spec/conversion/webhook/clientConfig/caBundle"}]',
            check=False,
        )  # fmt: skip
    log = proc.log_path.read_text(errors="replace")
    assert not re.search(r"\b403\b|forbidden", log, re.IGNORECASE), proc.tail()
