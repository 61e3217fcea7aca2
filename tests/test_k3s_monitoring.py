"""The K3s monitoring: the alerting rules pass promtool (syntax and their unit
tests), and the rules and the Grafana dashboard name only series that a live
gateway, edge and inference node really export."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from edgeswarm.models import write_triage_onnx

from .conftest import RunningGateway, edgeswarm_command, stop_process
from .heavy_peers import start_node, wait_for_nodes
from .k3s_tools import K3S, REPO, debian_tool

RULES = K3S / "base" / "monitoring" / "edgeswarm-rules.yaml"
RULES_TESTS = REPO / "tests" / "k3s" / "edgeswarm-rules.test.yaml"
DASHBOARD = K3S / "base" / "monitoring" / "edgeswarm-dashboard.json"
METRIC_NAME = re.compile(r"\bedgeswarm_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}
REQUIRED_ALERTS = {
    "EdgeswarmEdgeDisconnected",
    "EdgeswarmEdgeSpoolFilling",
    "EdgeswarmPolicyQuarantined",
    "EdgeswarmSpooledBatchesQuarantined",
    "EdgeswarmInferenceQueueSlow",
    "EdgeswarmLogCommitSlow",
}


def series_names(exposition: str) -> set[str]:
    """Every series name a scrape can hold: a family's samples, and the suffixed names
    of families that have no sample yet (a labelled counter before its first event)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


@pytest.fixture
def promtool() -> Path:
    return debian_tool("promtool", "prometheus")


def test_alerting_rules_pass_promtool_check(promtool: Path) -> None:
    done = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert alerts >= REQUIRED_ALERTS


def test_alerting_rules_pass_their_unit_tests(promtool: Path) -> None:
    done = subprocess.run(
        [str(promtool), "test", "rules", str(RULES_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULES_TESTS.read_text()))
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert tested == alerts, f"alerts without a promtool test: {sorted(alerts - tested)}"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Series names scraped from a real gateway, an edge and an inference node."""
    from .conftest import start_gateway

    tmp = tmp_path_factory.mktemp("monitoring")
    gateway: RunningGateway = start_gateway(tmp / "gateway")
    processes = [gateway.process]
    try:
        model = tmp / "triage.onnx"
        write_triage_onnx(model)
        node = start_node(tmp, [model], gateway=gateway, extra=("--metrics-port", "0"))
        processes.append(node.process)
        wait_for_nodes(gateway, 1)
        edge = subprocess.Popen(
            edgeswarm_command(
                "edge",
                "--edge-id",
                "edge-m",
                "--ca",
                str(gateway.ca),
                "--gateway",
                f"127.0.0.1:{gateway.port}",
                "--agents",
                "64",
                "--tick-hz",
                "20",
                "--duration",
                "60",
                "--metrics-port",
                "0",
                "--progress-interval",
                "0",
                "--data-dir",
                str(tmp / "edge-m"),
                "--join-token",
                gateway.edge_token(),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(edge)
        edge_port = None
        assert edge.stderr is not None
        for line in edge.stderr:
            record = json.loads(line)
            if record.get("message") == "edge starting":
                edge_port = int(record["metrics_port"])
                break
        assert edge_port is not None, "the edge never logged its metrics port"
        names = series_names(scrape(gateway.metrics_port))
        names |= series_names(scrape(int(node.info["metrics_port"])))
        deadline = time.monotonic() + 30
        while "edgeswarm_edge_gateway_connected" not in names or not scrape(edge_port):
            assert time.monotonic() < deadline, "no edge metrics"
            names |= series_names(scrape(edge_port))
        yield names
    finally:
        for process in reversed(processes):
            stop_process(process)


def test_every_series_in_the_rules_is_exported(exported: set[str]) -> None:
    named = set(METRIC_NAME.findall(RULES.read_text()))
    assert len(named) >= 10
    missing = named - exported
    assert not missing, f"the rules name series no daemon exports: {sorted(missing)}"


def test_every_series_on_the_dashboard_is_exported(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {name for q in queries for name in METRIC_NAME.findall(q)}
    assert {
        "edgeswarm_gateway_observations_total",
        "edgeswarm_edge_ack_latency_seconds_bucket",
    } <= named
    missing = named - exported
    assert not missing, f"the dashboard names series no daemon exports: {sorted(missing)}"


def test_the_exported_names_tell_a_histogram_from_its_samples(exported: set[str]) -> None:
    """The check above is only as strict as this: a family's bare name is no series."""
    assert "edgeswarm_edge_ack_latency_seconds_bucket" in exported
    assert "edgeswarm_edge_ack_latency_seconds" not in exported
    assert "edgeswarm_gateway_observations_total" in exported
    assert "edgeswarm_gateway_observations" not in exported


def test_every_series_the_operations_guide_names_is_exported(exported: set[str]) -> None:
    """docs/operations.md's metrics table is what operators build alerts from."""
    text = (REPO / "docs" / "operations.md").read_text()
    named = {n for n in METRIC_NAME.findall(text) if not n.endswith("_")}
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported}
    missing = {n for n in named if n not in exported and n not in families}
    assert not missing, f"docs/operations.md names series no daemon exports: {sorted(missing)}"
