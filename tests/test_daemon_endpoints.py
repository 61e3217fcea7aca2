"""What Prometheus and Kubernetes see of a daemon: /metrics beside /healthz and /readyz
on --metrics-host/--metrics-port, series named per the Prometheus conventions (no
``_created``, a build-info series, error counters at 0 before the first error, the
log's commit time as a histogram, the edge's ack latency observed, its connection,
reconnects and spool), ISO 8601 log timestamps, and start-up failures as one line.
Real gateway and edge processes on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import RunningGateway, edgeswarm_command, start_gateway, stop_process
from .operator import cli, error_line, http_get, json_logs

pytestmark = pytest.mark.integration


def sample(text: str, series: str) -> float:
    """The value of one sample (``name{labels}`` exactly as exposed) of a metrics page."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {series} in the page")


def scrape(port: int, host: str = "127.0.0.1") -> str:
    status, body = http_get(host, port, "/metrics")
    assert status == 200
    return body.decode()


def test_the_gateway_answers_metrics_health_and_readiness(gateway: RunningGateway) -> None:
    port = gateway.metrics_port
    assert http_get("127.0.0.1", port, "/healthz") == (200, b'{"status": "ok"}')
    assert http_get("127.0.0.1", port, "/readyz") == (200, b'{"status": "ok"}')
    status, body = http_get("127.0.0.1", port, "/")
    assert status == 404  # not the metrics page on every path
    assert json.loads(body)["paths"] == ["/metrics", "/healthz", "/readyz"]
    page = scrape(port)
    assert "_created" not in page
    assert re.search(r'^edgeswarm_build_info\{.*process="gateway".*\} 1\.0$', page, re.M)
    # error counters show 0 for every known label before the first error
    assert sample(page, 'edgeswarm_gateway_peers_refused_total{code="BAD_TOKEN"}') == 0
    assert sample(page, 'edgeswarm_gateway_peers_refused_total{code="UNKNOWN_PEER"}') == 0
    assert sample(page, 'edgeswarm_gateway_protocol_errors_total{code="MALFORMED_UPDATE"}') == 0
    assert sample(page, 'edgeswarm_gateway_storage_errors_total{store="observation_log"}') == 0
    assert sample(page, 'edgeswarm_gateway_sessions_revoked_total{role="edge"}') == 0
    # the log's commit time is a histogram, not a last-value gauge
    assert "# TYPE edgeswarm_gateway_log_commit_seconds histogram" in page
    assert "edgeswarm_gateway_log_last_commit_seconds" not in page


def test_metrics_listen_where_metrics_host_says(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    gateway = start_gateway(
        tmp_path / "gw", "--metrics-host", "0.0.0.0", "--metrics-port", str(free)
    )
    try:
        assert gateway.metrics_port == free
        with socket.create_connection(("127.0.0.2", free), timeout=5):  # not loopback-only
            pass
        assert http_get("127.0.0.2", free, "/healthz")[0] == 200
    finally:
        stop_process(gateway.process)


def edge_with_metrics(
    gateway: RunningGateway, data_dir: Path, *extra: str
) -> subprocess.Popen[str]:
    data_dir.mkdir(parents=True)
    with (data_dir.parent / "edge.log").open("w") as log:
        return subprocess.Popen(
            edgeswarm_command(
                *("edge", "--edge-id", "edge-m", "--ca", str(gateway.ca)),
                *("--gateway", f"127.0.0.1:{gateway.port}", "--data-dir", str(data_dir)),
                *("--agents", "200", "--batch-agents", "100", "--tick-hz", "20"),
                *("--metrics-port", "0", "--progress-interval", "0", "--drain-timeout", "1"),
                *extra,
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "EDGESWARM_JOIN_TOKEN": gateway.edge_token()},
        )


def logged_port(log: Path, process: subprocess.Popen[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in json_logs(log.read_text()):
            if record["message"] == "metrics listening":
                return int(record["port"])
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
    raise AssertionError("the edge never logged its metrics port")


def wait_for(port: int, condition: str, predicate: object, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        page = scrape(port)
        if predicate(page):  # type: ignore[operator]
            return page
        assert time.monotonic() < deadline, f"never {condition}:\n{page[-3000:]}"
        time.sleep(0.1)


def test_the_edge_exports_delivery_connection_and_spool(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "gw")
    edge = edge_with_metrics(gateway, tmp_path / "edge", "--duration", "300")
    try:
        port = logged_port(tmp_path / "edge.log", edge)
        page = wait_for(
            port, "acked", lambda p: sample(p, "edgeswarm_edge_ack_latency_seconds_count") >= 10
        )
        assert sample(page, "edgeswarm_edge_ack_latency_seconds_sum") > 0
        assert sample(page, "edgeswarm_edge_gateway_connected") == 1
        assert sample(page, "edgeswarm_edge_sessions_total") == 1
        assert sample(page, "edgeswarm_edge_reconnects_total") == 0
        assert sample(page, "edgeswarm_edge_dropped_batches_total") == 0
        assert sample(page, "edgeswarm_edge_resent_batches_total") == 0
        assert sample(page, "edgeswarm_edge_batches_acked_total") >= 10
        assert "edgeswarm_edge_spool_bytes" in page
        # error counters at 0 for their known labels, before any error
        assert sample(page, 'edgeswarm_edge_storage_errors_total{store="spool"}') == 0
        assert (
            sample(page, 'edgeswarm_edge_spool_quarantined_batches_total{reason="checksum"}') == 0
        )
        assert sample(page, 'edgeswarm_edge_policy_faults_total{kind="trap",policy="boids"}') == 0
        assert "_created" not in page
        assert re.search(r'^edgeswarm_build_info\{.*process="edge".*\} 1\.0$', page, re.M)
        assert http_get("127.0.0.1", port, "/readyz")[0] == 200
        stop_process(gateway.process)  # an outage: spooling within bound is still ready
        frozen = [
            r
            for r in json_logs((tmp_path / "edge.log").read_text())
            if r["message"] == "start-up objects left out of garbage collection"
        ]
        assert [r["daemon"] for r in frozen] == ["edge"]
        page = wait_for(
            port,
            "noticed the outage",
            lambda p: (
                sample(p, "edgeswarm_edge_reconnects_total") >= 1
                and sample(p, "edgeswarm_edge_spool_bytes") > 0
            ),
        )
        assert sample(page, "edgeswarm_edge_gateway_connected") == 0
        assert http_get("127.0.0.1", port, "/readyz")[0] == 200
        assert http_get("127.0.0.1", port, "/healthz")[0] == 200
    finally:
        stop_process(edge)
        stop_process(gateway.process)


def test_log_lines_carry_iso_8601_timestamps_and_code_names(gateway: RunningGateway) -> None:
    cli(
        *("edge", "--edge-id", "edge-t", "--ca", str(gateway.ca), "--ticks", "1"),
        *("--gateway", f"127.0.0.1:{gateway.port}", "--metrics-port", "-1"),
        env={"EDGESWARM_JOIN_TOKEN": "es1.nope.nope"},
    )
    records = json_logs(gateway.log.read_text())
    for record in records:
        stamp = datetime.fromisoformat(record["ts"])
        assert stamp.utcoffset() is not None  # with its zone
        assert "T" in record["ts"]
    refused = [record for record in records if record["message"] == "peer refused"]
    assert refused
    assert refused[0]["code"] == "BAD_TOKEN"  # a name, never a number
    # set up, it left its start-up objects out of the collector's full collections
    [frozen] = [
        r for r in records if r["message"] == "start-up objects left out of garbage collection"
    ]
    assert frozen["daemon"] == "gateway"
    assert frozen["frozen_objects"] > 10_000


def test_daemon_start_failures_are_one_line(gateway: RunningGateway, tmp_path: Path) -> None:
    # the QUIC port in use
    taken = cli(
        *("gateway", "--listen", f"127.0.0.1:{gateway.port}", "--data-dir", str(tmp_path / "b")),
        "--metrics-port",
        "-1",
    )
    assert taken.returncode == 1
    assert f"127.0.0.1:{gateway.port}" in error_line(taken)
    # a second gateway on the data directory
    second = cli("gateway", "--data-dir", str(gateway.data_dir), "--metrics-port", "-1")
    assert second.returncode == 1
    assert "is in use by another process" in error_line(second)
    # the metrics port in use (two daemons on one host with the same default)
    metrics = cli(
        *("gateway", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "c")),
        *("--metrics-port", str(gateway.metrics_port)),
    )
    assert metrics.returncode == 1
    line = error_line(metrics)
    assert f"127.0.0.1:{gateway.metrics_port}" in line
    assert "--metrics-port" in line
    # a certificate file that is not there
    key = tmp_path / "tls.key"
    key.write_text("")
    cert = cli(
        *("gateway", "--cert", str(tmp_path / "nope.crt"), "--key", str(key)),
        *("--data-dir", str(tmp_path / "d"), "--metrics-port", "-1"),
    )
    assert cert.returncode == 2
    assert str(tmp_path / "nope.crt") in error_line(cert)
    assert cli("gateway", "--cert", str(key), "--metrics-port", "-1").returncode == 2
    # a data directory that cannot be created
    blocker = tmp_path / "file"
    blocker.write_text("")
    uncreatable = cli("gateway", "--data-dir", str(blocker / "sub"), "--metrics-port", "-1")
    assert uncreatable.returncode == 1
    assert str(blocker / "sub") in error_line(uncreatable)


def test_a_peer_named_twice_is_a_usage_error(tmp_path: Path) -> None:
    """Two --peer options for one gateway would open two replication links to it."""
    result = cli(
        *("gateway", "--data-dir", str(tmp_path / "g"), "--metrics-port", "-1"),
        *("--peer", "127.0.0.1:4501", "--peer", "127.0.0.1:4502", "--peer", "127.0.0.1:4501"),
        timeout=60,  # on a refusal it exits at once; a gateway that starts runs until killed
    )
    assert result.returncode == 2
    assert error_line(result) == (
        "error: --peer 127.0.0.1:4501 given more than once; name each peer once"
    )
