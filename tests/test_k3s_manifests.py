"""The K3s manifests: every overlay renders, validates against the Kubernetes 1.32
schemas (strict: no unknown fields), and every container of the edgeswarm image
runs a real ``edgeswarm`` command whose flags, values and variables exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from edgeswarm.cli import conventions
from edgeswarm.cli.app import app

from .k3s_tools import KUBERNETES_VERSION, OVERLAYS, render, venv_tool

EDGESWARM_IMAGES = re.compile(r"^edgeswarm(-gpu)?(:[\w.-]+)?$")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
K8S_VARIABLE = re.compile(r"\$\((\w+)\)")


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("k3s") / f"{request.param}.yaml"
    path.write_text(render(request.param))
    return path


@dataclass
class Container:
    """One container of a rendered workload, with the environment it would see."""

    workload: str
    name: str
    spec: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.workload}/{self.name}"

    def argv(self) -> list[str]:
        """command + args as the kubelet runs them: ``$(VAR)`` replaced from env."""
        words = [*self.spec.get("command", []), *self.spec.get("args", [])]
        return [K8S_VARIABLE.sub(lambda m: self.env[m.group(1)], word) for word in words]


def containers(docs: list[dict[str, Any]]) -> Iterator[Container]:
    """Every container and init container of the edgeswarm image, with its environment:
    literal values, downward-API and ConfigMap references (ConfigMap values read from the
    rendered ConfigMaps), and ``envFrom`` ConfigMaps."""
    config_maps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        for spec in [*pod.get("initContainers", []), *pod["containers"]]:
            if not EDGESWARM_IMAGES.match(spec["image"]):
                continue
            env: dict[str, str] = {}
            for source in spec.get("envFrom", []):
                env.update(config_maps.get(source["configMapRef"]["name"], {}))
            for item in spec.get("env", []):
                if "value" in item:
                    env[item["name"]] = item["value"]
                elif "configMapKeyRef" in item.get("valueFrom", {}):
                    ref = item["valueFrom"]["configMapKeyRef"]
                    # operator-made ConfigMaps (edgeswarm-admin) are not rendered: a sample value
                    env[item["name"]] = config_maps.get(ref["name"], {}).get(
                        ref["key"], "ed25519:" + "A" * 43 + "="
                    )
                else:  # fieldRef: the pod's or node's name
                    env[item["name"]] = f"sample-{item['name'].lower().replace('_', '-')}"
            yield Container(f"{doc['kind']}/{doc['metadata']['name']}", spec["name"], spec, env)


def cli() -> Any:
    """The click command tree exactly as ``edgeswarm`` builds it (variables named)."""
    command = typer.main.get_command(app)
    conventions.apply(command)
    return command


def leaf(root: Any, words: list[str]) -> tuple[Any, list[str], list[str]]:
    """The subcommand ``words`` name, its path (``["keys", "add"]``) and its arguments."""
    command, path = root, []
    while words and words[0] in getattr(command, "commands", {}):
        command = command.commands[words[0]]
        path.append(words[0])
        words = words[1:]
    return command, path, words


def environment_of(command: Any) -> set[str]:
    return {p.envvar for p in command.params if isinstance(getattr(p, "envvar", None), str)}


# --- rendering and schemas --------------------------------------------------------


def validate(manifests: Path) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate, strict (unknown fields are errors), offline schemas."""
    tool = str(venv_tool("kubernetes-validate"))
    return subprocess.run(
        [tool, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(manifests)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_overlays_validate_strictly_against_kubernetes_1_32(rendered: Path) -> None:
    done = validate(rendered)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = {d["kind"] for d in documents(rendered.read_text())}
    assert {
        "StatefulSet",
        "DaemonSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Service",
        "ConfigMap",
    } <= kinds


def test_the_schema_check_refuses_an_unknown_field(rendered: Path, tmp_path: Path) -> None:
    """The validator really runs strict: a misspelt field fails the overlay."""
    docs = documents(rendered.read_text())
    gateway = next(d for d in docs if d["kind"] == "StatefulSet")
    gateway["spec"]["template"]["spec"]["containers"][0]["argz"] = ["gateway"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    done = validate(broken)
    assert done.returncode != 0
    assert "argz" in done.stdout + done.stderr


# --- commands ---------------------------------------------------------------------


def test_every_container_runs_a_real_command_with_real_flags(
    rendered: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """click parses each container's argv under its environment: an unknown flag, a
    value of the wrong type or choice, or a missing required option fails here."""
    root = cli()
    found = list(containers(documents(rendered.read_text())))
    assert {c.name for c in found} >= {"gateway", "edge", "inference", "enroll-admin"}
    for container in found:
        argv = container.argv()
        assert argv, f"{container.label}: no args"
        assert argv[0] != "edgeswarm", f"{container.label}: the entry point is edgeswarm already"
        command, path, arguments = leaf(root, argv)
        assert path, f"{container.label}: {argv[0]!r} is no edgeswarm command"
        assert not hasattr(command, "commands"), f"{container.label}: {path} needs a subcommand"
        for name in list(os.environ):
            if name.startswith("EDGESWARM_"):
                monkeypatch.delenv(name)
        for name, value in container.env.items():
            monkeypatch.setenv(name, value)
        try:
            command.make_context(" ".join(["edgeswarm", *path]), list(arguments))
        except Exception as exc:  # click's usage errors
            pytest.fail(f"{container.label}: edgeswarm {' '.join(argv)}: {exc}")


def test_every_variable_a_container_sets_is_read_by_its_command(rendered: Path) -> None:
    root = cli()
    shared = environment_of(root)
    for container in containers(documents(rendered.read_text())):
        command, path, _ = leaf(root, container.argv())
        known = environment_of(command) | shared
        unknown = {n for n in container.env if n.startswith("EDGESWARM_")} - known
        assert not unknown, (
            f"{container.label} (edgeswarm {' '.join(path)}) reads no {sorted(unknown)}"
        )


def test_help_of_every_container_command_lists_its_flags(rendered: Path) -> None:
    """`edgeswarm SUBCOMMAND --help` in the project's environment, as an operator would."""
    for container in containers(documents(rendered.read_text())):
        _, path, arguments = leaf(cli(), container.argv())
        done = subprocess.run(
            [sys.executable, "-m", "edgeswarm", *path, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
        )
        assert done.returncode == 0, f"{container.label}: {done.stderr}"
        for flag in (a.split("=", 1)[0] for a in arguments if a.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", done.stdout), (
                f"{container.label}: no {flag} in --help"
            )


# --- what operators rely on -------------------------------------------------------


def test_secrets_never_travel_in_argv(rendered: Path) -> None:
    """Join tokens come from Secret files; no command line carries one (ps shows argv)."""
    for container in containers(documents(rendered.read_text())):
        argv = container.argv()
        assert "--join-token" not in argv, container.label
        assert not any(word.startswith("es1.") for word in argv), container.label
        assert "EDGESWARM_JOIN_TOKEN" not in container.env, container.label
    docs = documents(rendered.read_text())
    for name in ("edgeswarm-edge", "edgeswarm-inference"):
        workload = next(d for d in docs if d["kind"] in WORKLOADS and d["metadata"]["name"] == name)
        pod = workload["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        token_file = Path(args[args.index("--join-token-file") + 1])
        mount = next(
            m
            for m in pod["containers"][0]["volumeMounts"]
            if m["mountPath"] == str(token_file.parent)
        )
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "edgeswarm-join"
        assert [i["path"] for i in volume["secret"]["items"]] == [token_file.name]


def test_daemons_are_probed_on_their_health_endpoints(rendered: Path) -> None:
    root = cli()
    for container in containers(documents(rendered.read_text())):
        spec = container.spec
        if "livenessProbe" not in spec and "readinessProbe" not in spec:
            continue
        argv = container.argv()
        _, _, arguments = leaf(root, argv)
        port = int(arguments[arguments.index("--metrics-port") + 1])
        assert arguments[arguments.index("--metrics-host") + 1] == "0.0.0.0", container.label
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz", container.label
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz", container.label
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert ports[spec[probe]["httpGet"]["port"]] == port, f"{container.label} {probe}"
    daemons = [c for c in containers(documents(rendered.read_text())) if "livenessProbe" in c.spec]
    assert {c.name for c in daemons} == {"gateway", "edge", "inference"}


def test_every_pod_runs_as_a_user_without_privileges(rendered: Path) -> None:
    for doc in documents(rendered.read_text()):
        if doc["kind"] not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for spec in [*pod.get("initContainers", []), *pod["containers"]]:
            context = spec["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, spec["name"]
            assert context["capabilities"]["drop"] == ["ALL"], spec["name"]
            assert "limits" in spec["resources"], spec["name"]


def test_the_namespace_admits_the_node_volumes_and_ports_its_pods_use(rendered: Path) -> None:
    """Pod Security "baseline" forbids hostPath volumes and host ports: a namespace that
    enforced it would refuse the edges and the broker at admission."""
    docs = documents(rendered.read_text())
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    enforced = namespace["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        host_path = any("hostPath" in v for v in pod.get("volumes", []))
        host_port = any("hostPort" in p for c in pod["containers"] for p in c.get("ports", []))
        if host_path or host_port:
            assert enforced in (None, "privileged"), f"{doc['metadata']['name']} under {enforced}"


def test_autoscaled_workloads_leave_their_replicas_to_the_autoscaler(rendered: Path) -> None:
    docs = documents(rendered.read_text())
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        workload = next(
            d
            for d in docs
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
        )
        assert "replicas" not in workload["spec"], f"an apply would reset {target['name']}'s count"


def test_fleet_gateways_peer_by_their_stable_names() -> None:
    docs = documents(render("fleet"))
    gateway = next(d for d in docs if d["kind"] == "StatefulSet")
    replicas = gateway["spec"]["replicas"]
    assert replicas >= 2
    container = next(c for c in containers(docs) if c.name == "gateway")
    peers = container.env["EDGESWARM_GATEWAY_PEER"].split()
    service = gateway["spec"]["serviceName"]
    namespace = gateway["metadata"]["namespace"]
    assert peers == [
        f"edgeswarm-gateway-{i}.{service}.{namespace}.svc.cluster.local:4433"
        for i in range(replicas)
    ]
    headless = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == service)
    assert headless["spec"]["clusterIP"] == "None"
    argv = container.argv()
    assert argv[argv.index("--gateway-id") + 1] == container.env["POD_NAME"]


def test_fleet_inference_nodes_ask_for_a_gpu_and_single_node_for_none() -> None:
    for overlay, gpus in (("fleet", 1), ("single-node", 0)):
        docs = documents(render(overlay))
        deployment = next(
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"] == "edgeswarm-inference"
        )
        pod = deployment["spec"]["template"]["spec"]
        container = next(c for c in containers(docs) if c.name == "inference")
        limits = pod["containers"][0]["resources"]["limits"]
        assert int(limits.get("nvidia.com/gpu", 0)) == gpus, overlay
        assert (pod.get("runtimeClassName") == "nvidia") == bool(gpus), overlay
        assert container.env["EDGESWARM_INFER_DEVICE"] == ("cuda" if gpus else "cpu"), overlay
        assert pod["containers"][0]["image"].startswith("edgeswarm-gpu:" if gpus else "edgeswarm:")
