"""The Helm chart, checked offline (there is no cluster here): rendered and linted by Helm's own
engine (helm-python-sdk), every object validated against the Kubernetes schemas
(kubernetes-validate --strict), ServiceMonitors against the Prometheus Operator's CRD schema,
and the chart held to the same contracts as compose: settings, ports, names, the gateway
template, and the restricted Pod Security Standard."""

import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from api_service.config import Settings as ApiSettings
from auth_service.config import Settings as AuthSettings
from devstack.dashboards import rendered as rendered_dashboards
from devstack.launcher import TEMPLATE_VARIABLES
from realtime_service.config import Settings as RealtimeSettings

ROOT = Path(__file__).parents[2]
CHART = ROOT / "deploy" / "helm" / "stack"
CRD = ROOT / "deploy" / "helm" / "schemas" / "servicemonitors.monitoring.coreos.com.yaml"
KUBERNETES_VERSION = "1.37.0"
RELEASE = "demo"
FULLNAME = "demo-stack"
SERVICES = {
    "auth": (AuthSettings, 8001),
    "api": (ApiSettings, 8002),
    "realtime": (RealtimeSettings, 8003),
}
# Read by uvicorn itself, not by the settings classes.
UVICORN_VARIABLES = {"FORWARDED_ALLOW_IPS"}

EVERY_OPT_IN: dict[str, Any] = {
    "image": {"registry": "registry.example.com/stack", "tag": "1.2.3"},
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "publicUrl": "https://stack.example.com",
    "nats": {"url": "nats://nats.messaging:4222"},
    "auth": {
        "signingKey": {"existingSecret": "stack-signing-key"},
        "settings": {"access_token_ttl_seconds": 600, "password_hash_concurrency": 4},
    },
    "api": {"settings": {"db_pool_size": 5}},
    "realtime": {
        "extraAllowedOrigins": ["https://admin.example.com"],
        "settings": {"heartbeat_seconds": 20, "queue_limit": 500},
    },
    "gateway": {
        "exporter": {"enabled": True},
        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
    },
    "autoscaling": {"enabled": True},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "stack.example.com",
        "tlsSecret": "stack-tls",
    },
    "networkPolicy": {
        "enabled": True,
        "gatewayFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
        ],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "postgres": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
        "nats": {
            "to": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "messaging"}}}
            ]
        },
    },
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "dashboards": {"enabled": True},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "nats-and-realtime-replicas": {
        "nats": {"url": "nats://nats:4222"},
        "realtime": {"replicas": 5},
    },
    "every-opt-in": EVERY_OPT_IN,
    "connections-autoscaling": {
        "autoscaling": {"enabled": True, "metric": "connections", "targetConnectionsPerPod": 800},
        "serviceMonitor": {"enabled": True},
    },
}

Manifest = dict[str, Any]


def render_chart(values: dict[str, Any]) -> list[Manifest]:
    """Every object the chart renders with these values (NOTES.txt is not an object)."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace="stack", is_install=True)
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(document for document in yaml.safe_load_all(text) if document)
    return objects


@functools.cache
def rendered(value_set: str) -> list[Manifest]:
    return render_chart(VALUE_SETS[value_set])


def objects_of(value_set: str, kind: str) -> list[Manifest]:
    return [obj for obj in rendered(value_set) if obj["kind"] == kind]


def find(value_set: str, kind: str, name: str) -> Manifest:
    matches = [obj for obj in objects_of(value_set, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_specs(objects: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job"}:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def containers(pod: Manifest) -> list[Manifest]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(container: Manifest) -> dict[str, Any]:
    return {
        item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])
    }


def service_container(value_set: str, name: str) -> Manifest:
    pod = find(value_set, "Deployment", f"{FULLNAME}-{name}")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


all_value_sets = pytest.mark.parametrize("value_set", sorted(VALUE_SETS))


# --- Helm's engine: render and lint ------------------------------------------------------


@all_value_sets
def test_the_chart_renders_and_lints_clean(value_set: str) -> None:
    kinds = {obj["kind"] for obj in rendered(value_set)}
    assert {"Deployment", "Service", "PodDisruptionBudget", "Job"} <= kinds
    # The only ConfigMaps are the dashboards, for Grafana's sidecar: no file copies.
    assert ("ConfigMap" in kinds) == VALUE_SETS[value_set].get("dashboards", {}).get(
        "enabled", False
    )
    report = helm.lint(
        CHART, VALUE_SETS[value_set], strict=True, kube_version=f"v{KUBERNETES_VERSION}"
    )
    # Severity 1 is information ("icon is recommended"); 2 and up are warnings and errors.
    problems = [message for message in report["messages"] if message["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "stack"
    shutil.copytree(CHART, broken)
    hpa = broken / "templates" / "hpa.yaml"
    hpa.write_text(hpa.read_text().replace("{{- end }}\n", "", 1))
    report = helm.lint(broken, {}, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert any(message["severity"] >= 2 for message in report["messages"]), report


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"autoscaling": {"enabled": True, "metric": "memory"}}, "/autoscaling/metric"),
        ({"realtime": {"replica": 3}}, "additional properties 'replica' not allowed"),
        ({"database": {"existingSecret": ""}}, "/database/existingSecret"),
        ({"auth": {"secretSettings": {"smtp_password": "plain"}}}, "/auth/secretSettings"),
    ],
)
def test_values_that_would_be_ignored_or_wrong_are_refused(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        render_chart(values)
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert any(complaint in error for error in report["errors"])


# --- Kubernetes' schemas -----------------------------------------------------------------


def kubernetes_validate(
    objects: list[Manifest], directory: Path
) -> subprocess.CompletedProcess[str]:
    manifest = directory / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "kubernetes-validate"),
            "--strict",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@all_value_sets
def test_every_object_is_valid_for_kubernetes(value_set: str, tmp_path: Path) -> None:
    objects = [obj for obj in rendered(value_set) if obj["kind"] != "ServiceMonitor"]
    result = kubernetes_validate(objects, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if line.startswith("INFO")]
    # Every object was checked against a schema (none skipped with a warning).
    assert len(passed) == len(objects), result.stdout
    assert all(line.endswith("against version 1.37") for line in passed)


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    deployment = find("defaults", "Deployment", f"{FULLNAME}-api")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    result = kubernetes_validate([broken], tmp_path)
    assert result.returncode != 0
    assert "livenesProbe" in result.stdout


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as kubectl's default (strict) field validation
    does for custom resources: every object schema listing its properties gets
    additionalProperties false unless it says otherwise."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        tightened["additionalProperties"] = False
    return tightened


@functools.cache
def servicemonitor_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == "servicemonitors.monitoring.coreos.com"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1"
    schema: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


@pytest.mark.parametrize("value_set", ["every-opt-in", "connections-autoscaling"])
def test_service_monitors_follow_the_crd_schema(value_set: str) -> None:
    monitors = objects_of(value_set, "ServiceMonitor")
    expected = {"auth", "api", "realtime"}
    if value_set == "every-opt-in":
        expected.add("gateway")
    assert {m["metadata"]["name"] for m in monitors} == {f"{FULLNAME}-{n}" for n in expected}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        jsonschema.validate(monitor, servicemonitor_schema())


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("interval", "every 15 seconds", "does not match"),
        ("scheme", "ftp", "is not one of"),
        ("intervall", "15s", "Additional properties are not allowed"),
    ],
)
def test_the_crd_schema_rejects_a_malformed_service_monitor(
    field: str, value: str, complaint: str
) -> None:
    monitor = json.loads(json.dumps(objects_of("every-opt-in", "ServiceMonitor")[0]))
    monitor["spec"]["endpoints"][0][field] = value
    with pytest.raises(jsonschema.ValidationError, match=complaint):
        jsonschema.validate(monitor, servicemonitor_schema())


def test_service_monitors_select_the_services_and_their_ports() -> None:
    for monitor in objects_of("every-opt-in", "ServiceMonitor"):
        service = find("every-opt-in", "Service", monitor["metadata"]["name"])
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        port_names = {port["name"] for port in service["spec"]["ports"]}
        assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --- The same contracts as compose -------------------------------------------------------


def variables_settings_ignore(value_set_objects: list[Manifest]) -> dict[str, set[str]]:
    """For each service, the environment variables the chart gives it that its settings class
    (or uvicorn) does not read; `<NAME>_FILE` is read for every setting (servicekit.settings)."""
    ignored: dict[str, set[str]] = {}
    for name, (settings_class, _) in SERVICES.items():
        fields = {field.upper() for field in settings_class.model_fields}
        known = fields | {f"{field}_FILE" for field in fields} | UVICORN_VARIABLES
        deployment = next(
            obj
            for obj in value_set_objects
            if obj["kind"] == "Deployment" and obj["metadata"]["name"] == f"{FULLNAME}-{name}"
        )
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ignored[name] = set(env_of(container)) - known
    return ignored


@all_value_sets
def test_every_variable_a_service_gets_is_a_setting(value_set: str) -> None:
    assert variables_settings_ignore(rendered(value_set)) == {name: set() for name in SERVICES}


def test_a_setting_that_does_not_exist_is_caught() -> None:
    objects = render_chart({"api": {"settings": {"db_pool_sise": 5}}})
    assert variables_settings_ignore(objects)["api"] == {"DB_POOL_SISE"}


def test_secret_settings_come_from_their_secrets_and_must_be_settings() -> None:
    objects = render_chart(
        {
            "auth": {
                "secretSettings": {
                    "signing_key_pem": {"secret": "stack-keys", "key": "private.pem"},
                    "smtp_pasword": {"secret": "stack-smtp", "key": "password"},
                }
            }
        }
    )
    auth = next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{FULLNAME}-auth"
    )
    pod = auth["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    # A file, never the value in the environment (servicekit.settings reads `<NAME>_FILE`).
    assert env["SIGNING_KEY_PEM_FILE"] == "/etc/stack/secrets/signing_key_pem/value"
    assert env["DATABASE_URL_FILE"] == "/etc/stack/database/url"
    assert not any(isinstance(value, dict) for value in env.values())
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    pem = volumes[mounts["/etc/stack/secrets/signing_key_pem"]]["secret"]
    assert pem["secretName"] == "stack-keys"
    assert pem["items"] == [{"key": "private.pem", "path": "value"}]
    url = volumes[mounts["/etc/stack/database"]]["secret"]
    assert url["items"] == [{"key": "url", "path": "url"}]
    assert variables_settings_ignore(objects)["auth"] == {"SMTP_PASWORD_FILE"}


def test_settings_from_values_reach_the_services_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    realtime = env_of(service_container("every-opt-in", "realtime"))
    for key, value in realtime.items():
        if not key.endswith("_FILE"):  # secrets, mounted from Secrets the test has not got
            monkeypatch.setenv(key, value)
    settings = RealtimeSettings()
    assert settings.heartbeat_seconds == 20
    assert settings.queue_limit == 500
    assert settings.allowed_origins == ("https://stack.example.com", "https://admin.example.com")
    assert settings.jwt_issuer == "https://stack.example.com/auth"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_services_get_every_setting_compose_gives_them(name: str) -> None:
    settings_class, _ = SERVICES[name]
    settings = {field.upper() for field in settings_class.model_fields}
    given = set(env_of(service_container("defaults", name)))
    # NATS is optional in the cluster (an external dependency by URL): given once `nats.url` is.
    given_with_nats = set(env_of(service_container("nats-and-realtime-replicas", name)))
    assert given_with_nats - given <= {"NATS_URL"}
    # How uvicorn learns whom to trust is each platform's own; what the service reads is not.
    # Compose's SMTP server is its development mail catcher; the chart has none, and takes the
    # operator's relay from auth.settings.
    compose_settings = set(compose()["services"][name]["environment"]) & settings
    # Secrets come as files in the chart (`<NAME>_FILE`), as values in compose's development
    # environment.
    given_with_nats |= {variable.removesuffix("_FILE") for variable in given_with_nats}
    assert compose_settings - {"SMTP_HOST", "SMTP_PORT"} <= given_with_nats
    assert "FORWARDED_ALLOW_IPS" in given


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_and_commands_agree_with_the_dockerfiles(name: str) -> None:
    _, port = SERVICES[name]
    dockerfile = (ROOT / f"{name}-service" / "Dockerfile").read_text()
    assert f"EXPOSE {port}" in dockerfile
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)[1])  # type: ignore[index]
    # The image migrates then serves; in the cluster the migrations hook has done the first.
    serve = shlex.split(cmd[-1].split("&& exec ", 1)[1])
    container = service_container("defaults", name)
    assert container["command"] == serve
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    service = find("defaults", "Service", f"{FULLNAME}-{name}")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
    ]


def test_the_gateway_reaches_each_service_by_its_upstream_name_and_port() -> None:
    template = (ROOT / "deploy" / "nginx" / "nginx.conf.template").read_text()
    upstreams = set(re.findall(r"upstream (\w+) \{", template))
    assert upstreams == set(SERVICES)
    gateway = env_of(service_container("defaults", "gateway"))
    for name, (_, port) in SERVICES.items():
        assert gateway[f"{name.upper()}_SERVERS"] == f"server {FULLNAME}-{name}:{port};"
        assert compose()["services"][name]  # the same component names as compose
    jwks = compose()["services"]["api"]["environment"]["JWKS_URL"]
    path = jwks.split(f":{SERVICES['auth'][1]}", 1)[1]
    for name in ("api", "realtime"):
        env = env_of(service_container("defaults", name))
        assert env["JWKS_URL"] == f"http://{FULLNAME}-auth:{SERVICES['auth'][1]}{path}"


def test_the_gateway_gets_exactly_the_template_variables_as_in_compose() -> None:
    container = service_container("defaults", "gateway")
    env = env_of(container)
    assert set(env) - {"NGINX_ENVSUBST_OUTPUT_DIR"} == set(TEMPLATE_VARIABLES)
    compose_env = compose()["services"]["nginx"]["environment"]
    for name in ("GATEWAY_LISTEN", "RUN_DIR", "ERROR_LOG", "ACCESS_LOG"):
        assert env[name] == compose_env[name], name
    # stub_status: in compose the exporter is another container, on the internal network; in
    # the chart it sits beside nginx in the pod, so nginx keeps the status page on loopback.
    assert env["STATUS_LISTEN"] == f"127.0.0.1:{compose_env['STATUS_LISTEN']}"
    pod = find("every-opt-in", "Deployment", f"{FULLNAME}-gateway")["spec"]["template"]["spec"]
    exporter = next(c for c in pod["containers"] if c["name"] == "exporter")
    assert exporter["args"] == [f"--nginx.scrape-uri=http://{env['STATUS_LISTEN']}/stub_status"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": int(env["GATEWAY_LISTEN"])}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/", "port": "http"}, probe
    (published,) = compose()["services"]["nginx"]["ports"]
    assert published.rsplit(":", 1)[1] == str(ports["http"])
    # WEB_ROOT is where the gateway image put the page and the client (compose's is the same).
    assert env["WEB_ROOT"] == compose_env["WEB_ROOT"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts[env["NGINX_ENVSUBST_OUTPUT_DIR"]] == "rendered"
    assert mounts[env["RUN_DIR"]] == "tmp"
    assert container["args"][:3] == [
        "nginx",
        "-c",
        f"{env['NGINX_ENVSUBST_OUTPUT_DIR']}/nginx.conf",
    ]


def test_the_gateway_runs_the_gateway_image_with_no_files_mounted_from_the_chart() -> None:
    """The template, the page and the client are in the image (deploy/gateway/Dockerfile);
    the chart carries no copy of them, so the pod mounts only its writable scratch space."""
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert service_container("defaults", "gateway")["image"] == f"stack-gateway:{chart_version}"
    for value_set in VALUE_SETS:
        pod = find(value_set, "Deployment", f"{FULLNAME}-gateway")["spec"]["template"]["spec"]
        gateway = next(c for c in pod["containers"] if c["name"] == "gateway")
        registry = VALUE_SETS[value_set].get("image", {})
        if registry:
            expected = f"{registry['registry']}/stack-gateway:{registry['tag']}"
            assert gateway["image"] == expected
        assert {volume["name"]: set(volume) - {"name"} for volume in pod["volumes"]} == {
            "rendered": {"emptyDir"},
            "tmp": {"emptyDir"},
        }
    assert not list((CHART / "files").glob("*.template"))
    assert not (CHART / "files" / "web").exists()


def test_the_dashboard_configmaps_hold_the_builders_dashboards() -> None:
    """The chart's folder is the dashboards' one home: what the builder writes is what the
    ConfigMaps carry (compose's Grafana mounts the same folder)."""
    written = rendered_dashboards()
    assert len(written) == 5
    dashboards = objects_of("every-opt-in", "ConfigMap")
    for name, text in written.items():
        (configmap,) = [c for c in dashboards if name in c["data"]]
        assert json.loads(configmap["data"][name]) == json.loads(text)
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    grafana = compose()["services"]["grafana"]["volumes"]
    assert "./deploy/helm/stack/files/dashboards:/var/lib/grafana/dashboards:ro" in grafana


# --- Pods: the restricted Pod Security Standard, probes, disruption, draining ------------

# The restricted profile (Kubernetes' Pod Security Standards, "Restricted"), field by field.
ALLOWED_VOLUME_SOURCES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: Manifest) -> list[str]:
    """What in this pod spec breaks the restricted profile (plus the chart's own rule: a
    read-only root filesystem), as readable findings."""
    found = []
    pod_context = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"pod {field}")
    for volume in pod.get("volumes", []):
        source = set(volume) - {"name"}
        if not source <= ALLOWED_VOLUME_SOURCES:
            found.append(f"volume {volume['name']} uses {source}")
    if pod_context.get("runAsUser") == 0:
        found.append("pod runs as root")
    for container in containers(pod):
        name = container["name"]
        context = {**pod_context, **container.get("securityContext", {})}
        own = container.get("securityContext", {})
        if own.get("privileged"):
            found.append(f"{name} privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name} may escalate privileges")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name} keeps capabilities")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name} adds capabilities")
        if context.get("runAsNonRoot") is not True:
            found.append(f"{name} may run as root")
        if context.get("runAsUser") == 0:
            found.append(f"{name} runs as uid 0")
        if context.get("seccompProfile", {}).get("type") not in {"RuntimeDefault", "Localhost"}:
            found.append(f"{name} has no seccomp profile")
        if own.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name} has a writable root filesystem")
        if any("hostPort" in port for port in container.get("ports", [])):
            found.append(f"{name} uses a host port")
    return found


@all_value_sets
def test_every_pod_meets_the_restricted_profile(value_set: str) -> None:
    pods = dict(pod_specs(rendered(value_set)))
    assert len(pods) == 5  # auth, api, realtime, gateway, migrations
    for name, pod in pods.items():
        assert restricted_violations(pod) == [], name
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        for container in containers(pod):
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            if container["name"] != "exporter":
                writable = "/tmp"  # noqa: S108  (an emptyDir, the pod's own)
                assert writable in mounts, f"{name}/{container['name']} has nowhere to write"


def test_the_profile_check_finds_violations() -> None:
    pod = json.loads(json.dumps(dict(pod_specs(rendered("defaults")))[f"{FULLNAME}-realtime"]))
    pod["hostNetwork"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    context = pod["containers"][0]["securityContext"]
    context["allowPrivilegeEscalation"] = True
    context["capabilities"] = {"add": ["SYS_ADMIN"]}
    context["readOnlyRootFilesystem"] = False
    del context["seccompProfile"]
    del pod["securityContext"]["seccompProfile"]
    assert restricted_violations(pod) == [
        "pod hostNetwork",
        "volume host uses {'hostPath'}",
        "realtime may escalate privileges",
        "realtime keeps capabilities",
        "realtime adds capabilities",
        "realtime has no seccomp profile",
        "realtime has a writable root filesystem",
    ]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_has_probes_on_its_health_endpoints(name: str) -> None:
    container = service_container("defaults", name)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"]["requests"]["cpu"]


@all_value_sets
def test_every_deployment_has_a_disruption_budget_and_a_service_selecting_its_pods(
    value_set: str,
) -> None:
    for deployment in objects_of(value_set, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        budget = find(value_set, "PodDisruptionBudget", name)
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budget["spec"]["maxUnavailable"] == 1
        service = find(value_set, "Service", name)
        assert service["spec"]["selector"].items() <= labels.items()
        port_names = {
            p["name"]
            for c in containers(deployment["spec"]["template"]["spec"])
            for p in c["ports"]
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names


def test_realtime_drains_before_it_is_killed() -> None:
    pod = find("defaults", "Deployment", f"{FULLNAME}-realtime")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    # The pod leaves the endpoints during preStop; SIGTERM then ends every stream at once
    # (disconnect / 1012), and uvicorn needs the rest of the grace period to finish.
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + 30


def test_replicas_and_nats_come_from_values() -> None:
    value_set = "nats-and-realtime-replicas"
    assert find(value_set, "Deployment", f"{FULLNAME}-realtime")["spec"]["replicas"] == 5
    for name in ("api", "realtime"):
        assert env_of(service_container(value_set, name))["NATS_URL"] == "nats://nats:4222"
        assert "NATS_URL" not in env_of(service_container("defaults", name))
    assert "NATS_URL" not in env_of(service_container(value_set, "auth"))


def test_defaults_leave_every_opt_in_off_and_the_network_policies_on() -> None:
    kinds = {obj["kind"] for obj in rendered("defaults")}
    assert not kinds & {"HorizontalPodAutoscaler", "Ingress", "ServiceMonitor"}
    policies = {o["metadata"]["name"] for o in rendered("defaults") if o["kind"] == "NetworkPolicy"}
    expected = {"auth", "api", "realtime", "gateway", "migrations"}
    assert policies == {f"{FULLNAME}-{name}" for name in expected}
    gateway = find("defaults", "Service", f"{FULLNAME}-gateway")["spec"]
    assert gateway["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in gateway


def test_a_published_gateway_can_keep_client_addresses() -> None:
    gateway = find("every-opt-in", "Service", f"{FULLNAME}-gateway")["spec"]
    assert (gateway["type"], gateway["externalTrafficPolicy"]) == ("LoadBalancer", "Local")


# --- Autoscaling, migrations, secrets, ingress, network policies ----------------------------


def test_realtime_autoscales_on_cpu_by_default_and_on_connections_when_asked() -> None:
    cpu = find("every-opt-in", "HorizontalPodAutoscaler", f"{FULLNAME}-realtime")
    assert cpu["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]
    connections = find("connections-autoscaling", "HorizontalPodAutoscaler", f"{FULLNAME}-realtime")
    assert connections["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "realtime_connections"},
                "target": {"type": "AverageValue", "averageValue": "800"},
            },
        }
    ]
    assert connections["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-realtime"
    # The autoscaler owns the replica count: the Deployment must not reset it on upgrade.
    deployment = find("connections-autoscaling", "Deployment", f"{FULLNAME}-realtime")
    assert "replicas" not in deployment["spec"]


def test_migrations_run_before_install_and_upgrade_in_order_with_each_image() -> None:
    job = find("every-opt-in", "Job", f"{FULLNAME}-migrations")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    steps = containers(pod)
    assert [c["name"] for c in steps] == ["migrate-auth", "migrate-api", "migrate-realtime"]
    for step, name in zip(steps, SERVICES, strict=True):
        assert step["image"] == f"registry.example.com/stack/{name}-service:1.2.3"
        assert env_of(step) == {"DATABASE_URL_FILE": "/etc/stack/database/url"}
        mounts = {m["mountPath"]: m["name"] for m in step["volumeMounts"]}
        assert mounts["/etc/stack/database"] == "database-url"
        dockerfile = (ROOT / f"{name}-service" / "Dockerfile").read_text()
        assert f"COPY {name}-service/migrations /app/migrations" in dockerfile
        # The same migrations as the image runs before it serves (api's: then the log's).
        cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)[1])  # type: ignore[index]
        assert step["command"] == shlex.split(cmd[-1].split(" && exec ", 1)[0])
        assert step["command"][:4] == ["python", "-m", "servicekit.migrate", "/app/migrations"]
        assert step["image"] == service_container("every-opt-in", name)["image"]


@all_value_sets
def test_secrets_are_only_referenced(value_set: str) -> None:
    objects = rendered(value_set)
    assert "Secret" not in {obj["kind"] for obj in objects}
    for name, pod in pod_specs(objects):
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for container in containers(pod):
            env = env_of(container)
            if container["name"] in {"gateway", "exporter"}:
                continue
            # The URL comes from the Secret mounted as a file, never in the environment.
            assert "DATABASE_URL" not in env, name
            assert env["DATABASE_URL_FILE"] == "/etc/stack/database/url", name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            secret = volumes[mounts["/etc/stack/database"]]["secret"]
            assert secret["secretName"] == "stack-database", name
            assert secret["items"] == [{"key": "url", "path": "url"}], name
            for item in container.get("env", []):
                assert "postgresql" not in str(item.get("value", "")), name
                assert "valueFrom" not in item, (name, item["name"])


def test_the_signing_key_is_mounted_from_its_secret() -> None:
    pod = find("every-opt-in", "Deployment", f"{FULLNAME}-auth")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = Path(env_of(container)["SIGNING_KEY_FILE"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "signing-key")
    assert path.parent == Path(mount["mountPath"])
    volume = next(v for v in pod["volumes"] if v["name"] == "signing-key")
    assert volume["secret"]["secretName"] == "stack-signing-key"
    assert path.name == "signing-key.pem"


def test_the_ingress_sends_everything_to_the_gateway_with_stream_timeouts() -> None:
    ingress = find("every-opt-in", "Ingress", f"{FULLNAME}-gateway")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": f"{FULLNAME}-gateway", "port": {"name": "http"}}
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert ingress["spec"]["tls"] == [{"hosts": ["stack.example.com"], "secretName": "stack-tls"}]


def component_of(peer: Manifest) -> str | None:
    labels: dict[str, str] = peer.get("podSelector", {}).get("matchLabels", {})
    return labels.get("app.kubernetes.io/component")


def test_forwarded_headers_are_trusted_from_the_gateway_alone_by_default() -> None:
    """By default uvicorn trusts X-Forwarded-* from any peer that can connect, and the
    NetworkPolicies let only the gateway connect (api and realtime reach auth too, and send
    none); without the policies the chart asks for an explicit list rather than trust every
    pod of the cluster."""
    for name in SERVICES:
        assert env_of(service_container("defaults", name))["FORWARDED_ALLOW_IPS"] == "*"
        policy = find("defaults", "NetworkPolicy", f"{FULLNAME}-{name}")
        (only_rule,) = policy["spec"]["ingress"]
        expected = {"gateway", "api", "realtime"} if name == "auth" else {"gateway"}
        assert {component_of(peer) for peer in only_rule["from"]} == expected
    without_policies = {"networkPolicy": {"enabled": False}}
    with pytest.raises(helm.HelmError, match="forwardedAllowIps"):
        render_chart(without_policies)
    pod_cidr = "10.244.0.0/16"
    for values in (
        {**without_policies, "forwardedAllowIps": pod_cidr},
        {"forwardedAllowIps": pod_cidr},
    ):
        objects = render_chart(values)
        for name in SERVICES:
            deployment = next(
                o
                for o in objects
                if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{FULLNAME}-{name}"
            )
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert env_of(container)["FORWARDED_ALLOW_IPS"] == pod_cidr


def test_network_policies_let_only_the_gateway_reach_the_services() -> None:
    value_set = "every-opt-in"
    metrics_from = EVERY_OPT_IN["networkPolicy"]["metricsFrom"]
    callers = {"auth": {"gateway", "api", "realtime"}, "api": {"gateway"}, "realtime": {"gateway"}}
    for name in SERVICES:
        policy = find(value_set, "NetworkPolicy", f"{FULLNAME}-{name}")
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        pods, metrics = policy["spec"]["ingress"]
        assert {component_of(peer) for peer in pods["from"]} == callers[name]
        assert metrics["from"] == metrics_from
        egress_ports = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
        # auth also calls out: the OpenID providers (HTTPS) and the mail relay (SMTP).
        expected = {53, 5432, 443, 587, 465, 25} if name == "auth" else {53, 5432, 4222, 8001}
        assert egress_ports == expected
    gateway = find(value_set, "NetworkPolicy", f"{FULLNAME}-gateway")
    reached = {component_of(rule["to"][0]) for rule in gateway["spec"]["egress"] if "to" in rule}
    assert reached == set(SERVICES)
    migrations = find(value_set, "NetworkPolicy", f"{FULLNAME}-migrations")
    assert "ingress" not in migrations["spec"]
    postgres = next(r for r in migrations["spec"]["egress"] if r["ports"][0]["port"] == 5432)
    assert postgres["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
