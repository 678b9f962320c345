"""Run the chart's rendered pods on a Docker engine, as a kubelet would run them, and try the
stack through the gateway. There is no cluster here; this is the closest check that the pod
specs work as written: the migrations Job's steps in order, then each Deployment's containers
with their command, environment, read-only root filesystem, uid, dropped capabilities and
volumes (a pod's later containers in its first one's network namespace), Services as network
aliases (one replica each), and a PostgreSQL container. Through the gateway it registers, logs
in, creates a board, opens an SSE stream on it, then sends realtime SIGTERM as the kubelet does
after preStop: the stream must end with `disconnect` 1012 and the process exit within the
grace period left. With gateway.exporter.enabled it scrapes the exporter beside nginx.

    python deploy/helm/try_on_docker.py --set image.registry=... --set image.tag=... \\
        --postgres-image ...

The images are those `make images` builds (the three services' and the gateway's).

It creates containers and one network named after --prefix, and removes them at the end.
"""

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parent / "stack"
RELEASE = "demo"


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}...: {result.stderr.strip()}")
    return result.stdout.strip()


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace="default", is_install=True)
    return [
        document
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document
    ]


def run_container(
    prefix: str,
    name: str,
    container: dict[str, Any],
    pod: dict[str, Any],
    secret_values: dict[tuple[str, str], str],
    workdir: Path,
    network: list[str],
    detach: bool,
) -> str:
    """`docker run` for one container of a pod; `network` is its network options (a pod's
    later containers join the first one's network namespace, as in a pod)."""
    pod_context = pod["securityContext"]
    context = {**pod_context, **container["securityContext"]}
    assert context["readOnlyRootFilesystem"]
    assert context["capabilities"]["drop"] == ["ALL"]
    args = [
        "run",
        "--name",
        f"{prefix}-{name}",
        *network,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        f"{context['runAsUser']}:{context['runAsGroup']}",
        "--group-add",
        str(pod_context["fsGroup"]),
    ]
    # Secrets reach the containers as files only (the chart's tests hold it to that).
    for item in container.get("env", []):
        args += ["--env", f"{item['name']}={item['value']}"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
        else:
            # A Secret's items as files, as the kubelet mounts them.
            secret = volume["secret"]
            files = workdir / f"{name}-{mount['name']}"
            files.mkdir(parents=True, exist_ok=True)
            for item in secret["items"]:
                value = secret_values[(secret["secretName"], item["key"])]
                (files / item["path"]).write_text(value)
            args += ["--volume", f"{files}:{mount['mountPath']}:ro"]
    if "command" in container:
        args += ["--entrypoint", container["command"][0]]
    args.append("--detach" if detach else "--rm")
    args.append(container["image"])
    args += container["command"][1:] if "command" in container else []
    args += container.get("args", [])
    return docker(*args)


def wait_healthy(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(1)


def call(base: str, method: str, path: str, body: Any = None, token: str = "") -> Any:
    request = urllib.request.Request(  # noqa: S310 (a local gateway)
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], help="a value, as helm --set")
    parser.add_argument("--postgres-image", required=True)
    parser.add_argument("--prefix", default="helm-try")
    options = parser.parse_args()
    values: dict[str, Any] = {}
    for assignment in options.set:
        values = _merge(values, helm.parse_set_string(assignment))
    objects = render(values)
    prefix = options.prefix
    password = secrets.token_hex(8)
    database_url = f"postgresql+asyncpg://stack:{password}@db:5432/stack"
    secret_values = {("stack-database", "url"): database_url}
    pods = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in {"Deployment", "Job"}
    }
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    started: list[str] = []
    docker("network", "create", prefix)
    try:
        with tempfile.TemporaryDirectory() as work:
            workdir = Path(work)
            started.append(f"{prefix}-db")
            docker(
                "run", "--detach", "--name", f"{prefix}-db", "--network", prefix,
                "--network-alias", "db", "--env", "POSTGRES_USER=stack",
                "--env", f"POSTGRES_PASSWORD={password}", "--env", "POSTGRES_DB=stack",
                options.postgres_image,
            )  # fmt: skip
            for _ in range(60):
                probe = ["exec", f"{prefix}-db", "pg_isready", "-U", "stack", "-h", "127.0.0.1"]
                if docker(*probe, check=False).endswith("accepting connections"):
                    break
                time.sleep(1)
            job = pods["migrations"]
            for step in [*job.get("initContainers", []), *job["containers"]]:
                print(f"migrations: {step['name']}", file=sys.stderr)
                run_container(prefix, step["name"], step, job, secret_values,
                              workdir, ["--network", prefix], detach=False)  # fmt: skip
            for component in ("auth", "api", "realtime", "gateway"):
                pod = pods[component]
                service = f"{RELEASE}-stack-{component}"
                assert service in services
                first = f"{prefix}-{component}-{pod['containers'][0]['name']}"
                for index, container in enumerate(pod["containers"]):
                    name = f"{component}-{container['name']}"
                    network = ["--network", prefix, "--network-alias", service]
                    if component == "gateway":  # published on a loopback port of the host
                        network += ["--publish", "127.0.0.1::8080"]
                    if index > 0:
                        network = ["--network", f"container:{first}"]
                    started.append(f"{prefix}-{name}")
                    run_container(prefix, name, container, pod, secret_values,
                                  workdir, network, detach=True)  # fmt: skip
                if component == "auth":  # api and realtime load its keys at start
                    time.sleep(5)
            port = docker("port", f"{prefix}-gateway-gateway", "8080/tcp").splitlines()[0]
            base = f"http://127.0.0.1:{port.rsplit(':', 1)[1]}"
            wait_healthy(f"{base}/auth/.well-known/jwks.json", 60)
            for path in ("/api/openapi.json", "/realtime/openapi.json"):
                wait_healthy(base + path, 60)
            user = {"email": f"{secrets.token_hex(4)}@example.com", "password": "try password 1"}
            results = {"register": call(base, "POST", "/auth/register", user)[0]}
            form = {"grant_type": "password", "username": user["email"]}
            form["password"] = user["password"]
            request = urllib.request.Request(  # noqa: S310
                f"{base}/auth/token", data=urllib.parse.urlencode(form).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                token = json.loads(response.read())["access_token"]
            status, board = call(base, "POST", "/api/boards", {"name": "from k8s specs"}, token)
            results["create board"] = status
            status, ticket = call(base, "POST", "/realtime/tickets", None, token)
            results["realtime ticket"] = status
            query = urllib.parse.urlencode(
                {"channels": f"board:{board['id']}", "ticket": ticket["ticket"]}
            )
            with urllib.request.urlopen(  # noqa: S310
                f"{base}/realtime/sse?{query}", timeout=10
            ) as stream:
                results["sse"] = stream.status
                # Nothing to replay on a new board: `ready` comes within the first lines.
                lines: list[str] = []
                while "event: ready" not in lines and len(lines) < 20:
                    lines.append(stream.readline().decode().strip())
                results["sse ready"] = "event: ready" in lines
                # What the kubelet does after preStop: SIGTERM. The stream must end with
                # `disconnect` 1012 (docs/contract.md §7), then the process must exit in the
                # grace period.
                realtime = f"{prefix}-realtime-realtime"
                terminated = time.monotonic()
                docker("kill", "--signal", "TERM", realtime)
                while not lines[-1].startswith("event: disconnect") and len(lines) < 60:
                    lines.append(stream.readline().decode().strip())
                data = stream.readline().decode().strip()
                print(f"the stream after SIGTERM: {lines[-1]} / {data}")
                code = json.loads(data.removeprefix("data: "))["code"]
                results["drain"] = lines[-1] == "event: disconnect" and code == 1012
            # The kubelet kills the container at the end of the grace period, preStop included.
            realtime_pod = pods["realtime"]
            pre_stop = realtime_pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            budget = realtime_pod["terminationGracePeriodSeconds"] - int(pre_stop[1])
            results["realtime exit code"] = docker("wait", realtime)  # once it has exited
            drained_in = time.monotonic() - terminated
            print(f"realtime exited {drained_in:.1f} s after SIGTERM (budget {budget} s)")
            results["realtime exited in time"] = drained_in < budget
            if pods["gateway"]["containers"][-1]["name"] == "exporter":
                scrape = docker("exec", f"{prefix}-gateway-gateway", "curl", "-fsS",
                                "http://127.0.0.1:9113/metrics", check=False)  # fmt: skip
                results["exporter"] = "nginx_connections_accepted" in scrape
            results["gateway /metrics"] = call(base, "GET", "/metrics")[0]
            print(results)
            expected = {
                "register": 201,
                "create board": 201,
                "realtime ticket": 201,
                "sse": 200,
                "sse ready": True,
                "drain": True,
                "realtime exit code": "0",
                "realtime exited in time": True,
                "gateway /metrics": 404,
            }
            if "exporter" in results:
                expected["exporter"] = True
            if results != expected:
                sys.exit(f"expected {expected}")
    finally:
        for name in reversed(started):
            logs = subprocess.run(
                ["docker", "logs", "--tail", "5", name], capture_output=True, text=True, check=False
            )
            print(f"--- {name}\n{(logs.stdout + logs.stderr).strip()}", file=sys.stderr)
            docker("rm", "--force", name, check=False)
        docker("network", "rm", prefix, check=False)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


if __name__ == "__main__":
    main()
