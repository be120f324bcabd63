"""Every rendered overlay of k8s/ is valid Kubernetes (strict schemas of pinned versions; CloudNativePG
clusters against the schema vendored in k8s/schemas/) and follows mcloud's deployment rules: hardened
containers, probes, requests/limits, HPA + PDB + ServiceAccount per Deployment, NetworkPolicies that let
each component reach exactly what the code calls, settings that exist in the services' pydantic models."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"

# The oldest Kubernetes minor the manifests support and a recent one; both strict (unknown fields fail).
K8S_VERSIONS = ("1.30", "1.34")

SERVICES = {"identity": 50051, "loyalty": 50052, "journey": 50053, "recommend": 50054, "messaging": 50055}
APPS = ("gateway", *SERVICES)
METRICS_PORT = 9090
SETTINGS = {
    "gateway": ("gateway.settings", "GatewaySettings"),
    "identity": ("identity.settings", "IdentitySettings"),
    "loyalty": ("loyalty.settings", "LoyaltySettings"),
    "journey": ("journey.settings", "JourneySettings"),
    "recommend": ("recommend.settings", "RecommendSettings"),
    "messaging": ("messaging.settings", "MessagingSettings"),
}
# keys of the operator-created Secret mcloud-secrets (k8s/README.md says how to create it)
MCLOUD_SECRET_KEYS = {"valkey-password", "messaging-tracking-secret"}
# keys CloudNativePG puts in the <cluster>-app Secret
CNPG_APP_SECRET_KEYS = {"username", "user", "password", "host", "port", "dbname", "uri", "jdbc-uri", "fqdn-uri",
                        "fqdn-jdbc-uri", "pgpass"}
# namespaces outside mcloud's that policies may name, and what they may reach
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"
CNPG_NAMESPACE = "cnpg-system"

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")


# --- helpers -----------------------------------------------------------------------------------------

def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"].get("labels", {})


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def containers(obj: dict) -> Iterator[dict]:
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions); {} selects everything."""
    selector = selector or {}
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def settings_class(app: str):
    module, cls = SETTINGS[app]
    return getattr(importlib.import_module(module), cls)


def callees_in_code(app: str) -> set[str]:
    """Services `app` calls over gRPC: its settings' `<service>_target` fields."""
    fields = settings_class(app).model_fields
    return {name.removesuffix("_target") for name in fields if name.endswith("_target")}


# --- the network model -------------------------------------------------------------------------------
# A "pod" here is a labelled endpoint in the namespace: every workload's pod template, plus one pod per
# CloudNativePG cluster (the operator labels its instances cnpg.io/cluster=<name>).

def pods(objects: list[dict]) -> dict[str, dict]:
    result = {o["metadata"]["name"]: pod_labels(o) for o in workloads(objects)}
    for cluster in by_kind(objects, "Cluster"):
        name = cluster["metadata"]["name"]
        result[name] = {"cnpg.io/cluster": name, **cluster["spec"].get("inheritedMetadata", {}).get("labels", {})}
    return result


def _port_allowed(rule: dict, port: int, protocol: str = "TCP") -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        assert isinstance(p.get("port", 0), int), f"use port numbers in NetworkPolicies: {p}"
        if p.get("protocol", "TCP") == protocol and ("port" not in p or p["port"] == port):
            return True
    return False


def _peer_matches(peer: dict, labels: dict | None, namespace: str | None) -> bool:
    """`labels` is a pod of our namespace; `namespace` (with labels None) any pod of another namespace."""
    if "ipBlock" in peer:
        return False  # ipBlocks are meant for addresses outside the cluster
    if "namespaceSelector" in peer:
        if namespace is None:
            return False
        return selector_matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    return labels is not None and selector_matches(peer.get("podSelector"), labels)


def _allowed(policies: list[dict], direction: str, target: dict, peer_labels: dict | None,
             peer_namespace: str | None, port: int) -> bool:
    """Whether the policies selecting `target` allow traffic in `direction` with the peer on `port`."""
    kind = "Ingress" if direction == "ingress" else "Egress"
    key = "from" if direction == "ingress" else "to"
    selecting = [p for p in policies if kind in p["spec"].get("policyTypes", ["Ingress"])
                 and selector_matches(p["spec"]["podSelector"], target)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get(key)
            if _port_allowed(rule, port) and (not peers or any(
                    _peer_matches(peer, peer_labels, peer_namespace) for peer in peers)):
                return True
    return False


def can_connect(policies: list[dict], src: dict, dst: dict, port: int) -> bool:
    """Pod `src` may open a TCP connection to pod `dst`:`port` (egress of src and ingress of dst)."""
    return (_allowed(policies, "egress", src, dst, None, port)
            and _allowed(policies, "ingress", dst, src, None, port))


def reachable_from(objects: list[dict], dst: str, port: int) -> set[str]:
    """Names of the in-namespace pods that can reach pod `dst` on `port`."""
    policies = by_kind(objects, "NetworkPolicy")
    all_pods = pods(objects)
    return {name for name, labels in all_pods.items()
            if name != dst and can_connect(policies, labels, all_pods[dst], port)}


def admitted_by(objects: list[dict], dst: str, port: int) -> set[str]:
    """Names of the in-namespace pods the policies of `dst` alone admit on `port` (whatever their egress)."""
    policies = by_kind(objects, "NetworkPolicy")
    all_pods = pods(objects)
    return {name for name, labels in all_pods.items()
            if name != dst and _allowed(policies, "ingress", all_pods[dst], labels, None, port)}


def external_namespaces_reaching(objects: list[dict], dst: str, port: int) -> set[str]:
    policies = by_kind(objects, "NetworkPolicy")
    target = pods(objects)[dst]
    candidates = {INGRESS_NAMESPACE, MONITORING_NAMESPACE, CNPG_NAMESPACE, "default", "kube-system"}
    return {ns for ns in candidates if _allowed(policies, "ingress", target, None, ns, port)}


# --- schema validation -------------------------------------------------------------------------------

CNPG_SCHEMA = json.loads((K8S / "schemas" / "cnpg-cluster.json").read_text())


@pytest.fixture
def cached_schemas(monkeypatch):
    """kubernetes_validate re-reads the (multi-megabyte) definitions file for every object: read each once."""
    read = getattr(kubernetes_validate.utils, "schema_contents", None)
    if read is not None:
        monkeypatch.setattr(kubernetes_validate.utils, "schema_contents", functools.cache(read))


def test_every_object_validates_against_the_kubernetes_schemas(objects, cached_schemas):
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("postgresql.cnpg.io/"):
            try:
                jsonschema.Draft202012Validator(CNPG_SCHEMA).validate(obj)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{where}: {exc.json_path}: {exc.message}")
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(map(str, exc.path))
                pytest.fail(f"{where} (Kubernetes {version}): {path}: {exc.message}")
    assert {"Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy", "Job", "Cluster", "StatefulSet", "Ingress", "ConfigMap", "Namespace"} <= kinds


def test_the_vendored_cnpg_schema_rejects_a_typo(objects):
    cluster = json.loads(json.dumps(by_kind(objects, "Cluster")[0]))
    cluster["spec"]["instance"] = cluster["spec"].pop("instances")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(CNPG_SCHEMA).validate(cluster)


def test_everything_lives_in_the_overlay_namespace(objects, overlay):
    namespace = named(objects, "Namespace", "mcloud-dev" if overlay == "dev" else "mcloud")
    ns = namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == ns, f"{obj['kind']}/{obj['metadata']['name']}"


# --- containers --------------------------------------------------------------------------------------

def test_every_container_is_hardened(objects):
    for obj in workloads(objects):
        spec = pod_spec(obj)
        pod_sc = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
        for c in containers(obj):
            where = f"{obj['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})

            def effective(key, sc=sc, pod_sc=pod_sc):
                return sc.get(key, pod_sc.get(key))

            assert effective("runAsNonRoot") is True, where
            assert isinstance(effective("runAsUser"), int) and effective("runAsUser") > 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert (effective("seccompProfile") or {}).get("type") == "RuntimeDefault", where
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root filesystem needs a writable /tmp"


def test_every_container_has_requests_and_limits(objects):
    for obj in workloads(objects):
        for c in containers(obj):
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{obj['metadata']['name']}/{c['name']} {kind}"


def test_images_are_pinned_by_tag(objects):
    for obj in workloads(objects):
        for c in containers(obj):
            image = c["image"]
            name, _, tag = image.split("@")[0].rpartition(":")
            assert name and "/" not in tag and tag not in ("", "latest"), f"{obj['metadata']['name']}: {image}"
    for cluster in by_kind(objects, "Cluster"):
        assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", cluster["spec"]["imageName"]), cluster["metadata"]["name"]


def test_long_running_containers_have_probes(objects):
    for obj in workloads(objects):
        if obj["kind"] == "Job":
            continue
        for c in pod_spec(obj)["containers"]:
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert "readinessProbe" in c and "livenessProbe" in c, where


def test_grpc_services_use_native_grpc_probes_and_the_gateway_its_health_routes(objects):
    for svc, port in SERVICES.items():
        c = pod_spec(named(objects, "Deployment", svc))["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": port}, f"{svc} {probe}"
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": port, "metrics": METRICS_PORT}
    health_routes = (REPO / "gateway" / "src" / "gateway" / "routes" / "health.py").read_text()
    paths = set(re.findall(r'@router\.get\(\s*"([^"]+)"', health_routes))
    c = pod_spec(named(objects, "Deployment", "gateway"))["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    for app in APPS:
        spec = pod_spec(named(objects, "Deployment", app))
        sleep = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep + 10 < spec["terminationGracePeriodSeconds"], app


# --- per Deployment: HPA, PDB, ServiceAccount, Service -------------------------------------------------

def test_every_deployment_has_an_hpa_a_pdb_and_its_own_service_account(objects, overlay):
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind(objects, "HorizontalPodAutoscaler")}
    accounts = {sa["metadata"]["name"]: sa for sa in by_kind(objects, "ServiceAccount")}
    for dep in by_kind(objects, "Deployment"):
        name = dep["metadata"]["name"]
        assert "replicas" not in dep["spec"], f"{name}: the HPA owns the replica count"
        hpa = hpas.get(name)
        assert hpa and hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment", f"{name}: no HPA"
        assert hpa["apiVersion"] == "autoscaling/v2"
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        assert 1 <= low <= high, name
        if overlay == "dev":
            assert low == 1, name
        elif name in APPS:
            assert low >= 3, name
        pdbs = [p for p in by_kind(objects, "PodDisruptionBudget")
                if selector_matches(p["spec"]["selector"], pod_labels(dep))]
        assert len(pdbs) == 1, f"{name}: {len(pdbs)} PodDisruptionBudgets"
        # maxUnavailable (not minAvailable): one replica in dev must not block node drains
        assert pdbs[0]["spec"].get("maxUnavailable") == 1, name
        sa = pod_spec(dep).get("serviceAccountName")
        assert sa in accounts, f"{name}: service account {sa!r} missing"
        assert accounts[sa].get("automountServiceAccountToken") is False, sa


def test_every_service_port_is_named_and_selects_a_workload(objects):
    for svc in by_kind(objects, "Service"):
        name = svc["metadata"]["name"]
        targets = [w for w in workloads(objects) if selector_matches(svc["spec"]["selector"], pod_labels(w))]
        assert targets, f"Service {name} selects nothing"
        container_ports = {p["name"] for w in targets for c in containers(w) for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port.get("name"), f"Service {name}: unnamed port {port['port']}"
            if isinstance(port["targetPort"], str):
                assert port["targetPort"] in container_ports, f"Service {name}: {port['targetPort']}"
    for svc, port in SERVICES.items():
        ports = {p["name"]: p["port"] for p in named(objects, "Service", svc)["spec"]["ports"]}
        assert ports == {"grpc": port, "metrics": METRICS_PORT}, svc
    ports = {p["name"]: p["port"] for p in named(objects, "Service", "gateway")["spec"]["ports"]}
    assert ports == {"http": 8080, "metrics": METRICS_PORT}


def test_only_the_gateway_has_an_ingress(objects, overlay):
    [ingress] = by_kind(objects, "Ingress")
    backends = {(p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
                for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert backends == {("gateway", "http")}
    if overlay == "prod":
        assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in by_kind(objects, "Service"))


# --- secrets and configuration ------------------------------------------------------------------------

def test_no_secret_is_committed_and_every_reference_is_documented(objects):
    assert not by_kind(objects, "Secret"), "Secrets are created by the operator (k8s/README.md), never committed"
    clusters = {c["metadata"]["name"] for c in by_kind(objects, "Cluster")}
    readme = (K8S / "README.md").read_text()
    for obj in workloads(objects):
        for c in containers(obj):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                where = f"{obj['metadata']['name']}/{e['name']}"
                if ref["name"] == "mcloud-secrets":
                    assert ref["key"] in MCLOUD_SECRET_KEYS, where
                else:
                    assert ref["name"].removesuffix("-app") in clusters, where
                    assert ref["key"] in CNPG_APP_SECRET_KEYS, where
            assert not c.get("envFrom"), "explicit env only: every name is checked against the settings"
    for key in MCLOUD_SECRET_KEYS:
        assert key in readme, f"k8s/README.md does not say how to create {key}"


def test_env_names_match_the_pydantic_settings(objects):
    for app in APPS:
        fields = settings_class(app).model_fields
        prefix = f"{app.upper()}_"
        for kind, name in (("Deployment", app), ("Job", f"{app}-migrate")):
            c = pod_spec(named(objects, kind, name))["containers"][0]
            env = env_of(c)
            for var in env:
                if var.startswith(prefix):
                    assert var[len(prefix):].lower() in fields, f"{name}: {var} is not a {app} setting"
                else:
                    assert var == "VALKEY_PASSWORD", f"{name}: {var} has no {prefix} prefix"
            required = {f for f, info in fields.items() if info.is_required()}
            assert {f"{prefix}{f.upper()}" for f in required} <= set(env), name
            assert env[f"{prefix}DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": f"{app}-db-app", "key": "uri"}
        env = env_of(pod_spec(named(objects, "Deployment", app))["containers"][0])
        assert env[f"{prefix}REDIS_URL"]["value"] == "redis://:$(VALKEY_PASSWORD)@valkey:6379/0"
        assert list(env).index("VALKEY_PASSWORD") < list(env).index(f"{prefix}REDIS_URL"), "$(VAR) needs order"
        assert env[f"{prefix}OTLP_ENDPOINT"]["value"] == "http://otel-collector:4317"
        host = "HTTP_HOST" if app == "gateway" else "GRPC_HOST"
        assert env[f"{prefix}{host}"]["value"] == "0.0.0.0"
        if app != "gateway":
            assert env[f"{prefix}GRPC_PORT"]["value"] == str(SERVICES[app])
        assert env[f"{prefix}METRICS_PORT"]["value"] == str(METRICS_PORT)
        assert env[f"{prefix}METRICS_HOST"]["value"] == "0.0.0.0"


def test_every_grpc_target_the_code_has_points_at_the_service(objects):
    for app in APPS:
        env = env_of(pod_spec(named(objects, "Deployment", app))["containers"][0])
        for callee in callees_in_code(app):
            # dns:/// on a headless Service: every ready pod, calls spread by round_robin
            assert env[f"{app.upper()}_{callee.upper()}_TARGET"]["value"] == f"dns:///{callee}:{SERVICES[callee]}", app
    assert callees_in_code("gateway") == set(SERVICES)


def test_grpc_services_are_headless(objects):
    for svc in SERVICES:
        assert named(objects, "Service", svc)["spec"]["clusterIP"] == "None", svc
    assert "clusterIP" not in named(objects, "Service", "gateway")["spec"]


def test_migrations_run_as_jobs_with_the_service_image(objects):
    for app in APPS:
        job = named(objects, "Job", f"{app}-migrate")
        dep = named(objects, "Deployment", app)
        [c] = pod_spec(job)["containers"]
        assert c["args"] == ["migrate"]
        assert c["image"] == pod_spec(dep)["containers"][0]["image"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        main = Path(importlib.util.find_spec(f"{app}.__main__").origin).read_text()
        assert "migrate" in main or "service_main import main" in main, f"python -m {app} has no migrate command"


def test_one_postgresql_cluster_per_component(objects, overlay):
    clusters = {c["metadata"]["name"]: c for c in by_kind(objects, "Cluster")}
    assert set(clusters) == {f"{app}-db" for app in APPS}
    for app in APPS:
        spec = clusters[f"{app}-db"]["spec"]
        assert spec["bootstrap"]["initdb"] == {"database": app, "owner": app, "dataChecksums": True}
        assert spec["instances"] == (1 if overlay == "dev" else 3)
        assert spec["enableSuperuserAccess"] is False


def test_valkey_persists_the_bus(objects):
    sts = named(objects, "StatefulSet", "valkey")
    conf = named(objects, "ConfigMap", "valkey-config")["data"]["valkey.conf"]
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    c = pod_spec(sts)["containers"][0]
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert "$(VALKEY_PASSWORD)" in c["args"]


def test_the_otel_collector_receives_otlp(objects):
    [config_map] = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("otel-collector")]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    pipelines = config["service"]["pipelines"]
    assert "otlp" in pipelines["traces"]["receivers"] and pipelines["traces"]["exporters"]
    assert set(pipelines["metrics"]["exporters"]) <= set(config["exporters"])
    dep = named(objects, "Deployment", "otel-collector")
    assert pod_spec(dep)["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]


# --- NetworkPolicies ---------------------------------------------------------------------------------

def test_default_deny_and_dns(objects):
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    [rule] = policies["allow-dns"]["egress"]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


def test_every_pod_is_selected_by_its_own_policy(objects):
    specific = [p for p in by_kind(objects, "NetworkPolicy") if p["spec"]["podSelector"]]
    for name, labels in pods(objects).items():
        mine = [p for p in specific if selector_matches(p["spec"]["podSelector"], labels)]
        assert mine, f"{name}: no NetworkPolicy selects it"
        assert all(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in mine), name


def test_services_are_reachable_only_from_the_gateway_and_their_callers_in_code(objects):
    for svc, port in SERVICES.items():
        callers = {app for app in APPS if svc in callees_in_code(app)}
        assert "gateway" in callers
        assert reachable_from(objects, svc, port) == callers == admitted_by(objects, svc, port), svc
        assert external_namespaces_reaching(objects, svc, port) == set(), svc
        assert external_namespaces_reaching(objects, svc, METRICS_PORT) == {MONITORING_NAMESPACE}, svc
    assert reachable_from(objects, "journey", 50055) == set(), "only the listed ports are open"


def test_only_the_gateway_is_reachable_from_the_ingress_controller(objects):
    assert reachable_from(objects, "gateway", 8080) == set()
    assert external_namespaces_reaching(objects, "gateway", 8080) == {INGRESS_NAMESPACE}
    assert external_namespaces_reaching(objects, "gateway", METRICS_PORT) == {MONITORING_NAMESPACE}
    for name in pods(objects):
        if name != "gateway":
            for port in (*SERVICES.values(), 8080, 5432, 6379, 4317, METRICS_PORT, 8000):
                assert INGRESS_NAMESPACE not in external_namespaces_reaching(objects, name, port), (name, port)


def test_each_database_is_reachable_only_from_its_service_and_migration(objects):
    for app in APPS:
        db = f"{app}-db"
        assert reachable_from(objects, db, 5432) == {app, f"{app}-migrate"} == admitted_by(objects, db, 5432), db
        assert external_namespaces_reaching(objects, db, 5432) == {CNPG_NAMESPACE}, db
        assert external_namespaces_reaching(objects, db, 8000) == {CNPG_NAMESPACE}, db


def test_valkey_and_the_collector_serve_the_applications(objects):
    assert reachable_from(objects, "valkey", 6379) == set(APPS) == admitted_by(objects, "valkey", 6379)
    assert set(APPS) <= reachable_from(objects, "otel-collector", 4317)
    assert not any(name.endswith("-migrate") for name in reachable_from(objects, "valkey", 6379))


def test_the_network_model_itself():
    """The evaluator the tests above rely on: deny by default, allow by rule."""
    deny = {"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    allow_in = {"spec": {"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Ingress"],
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"c": "d"}}}],
                                      "ports": [{"protocol": "TCP", "port": 1}]}]}}
    allow_out = {"spec": {"podSelector": {"matchLabels": {"c": "d"}}, "policyTypes": ["Egress"],
                          "egress": [{"to": [{"podSelector": {"matchExpressions": [
                              {"key": "a", "operator": "In", "values": ["b"]}]}}]}]}}
    a, c = {"a": "b"}, {"c": "d"}
    assert can_connect([], c, a, 1)
    assert not can_connect([deny], c, a, 1)
    assert not can_connect([deny, allow_in], c, a, 1)
    assert can_connect([deny, allow_in, allow_out], c, a, 1)
    assert not can_connect([deny, allow_in, allow_out], c, a, 2)
    assert not can_connect([deny, allow_in, allow_out], a, c, 1)
