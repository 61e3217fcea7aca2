"""The inference node killed mid-batch: every heavy request is answered exactly once.

A gateway, an inference node serving the ``triage`` ONNX model (as ``edgeswarm demo``
runs it), and an edge whose ``escalate`` policy sends its top suspects down the heavy
lane every tick. The node is killed with SIGKILL while requests are in flight and
started again on its data directory. Every row the edge asked about must come back at
most once, answered or failed explicitly (a timeout or an error status), and none may
vanish: ``heavy_rows`` equals the rows of every status in ``heavy_results`` plus those
still outstanding when the edge exits (it does not wait for the last ticks' answers);
answers resume after the restart; the observations are delivered as always.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from edgeswarm.chaos.processes import (
    GatewayProcess,
    ProgressLines,
    edgeswarm_command,
    kill9,
    start_edge,
    start_gateway,
    stop,
    tail,
)
from edgeswarm.chaos.verdict import delivery, finish
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.models import TRIAGE_MODEL, write_anomaly_model, write_triage_onnx
from edgeswarm.wire import Role

NODE_ID = "chaos-infer"


def _start_node(
    gateway: GatewayProcess, work: Path, model: Path, token: str
) -> subprocess.Popen[str]:
    with (work / "node.log").open("a") as log:
        node = subprocess.Popen(
            edgeswarm_command(
                "infer", "--model", str(model), "--node-id", NODE_ID,
                "--gateway", f"127.0.0.1:{gateway.port}", "--ca", str(gateway.ca),
                "--join-token", token, "--data-dir", str(work / "node"),
                "--http", "127.0.0.1:0", "--metrics-port", "-1",
            ),
            stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
    assert node.stdout is not None
    ready = node.stdout.readline()
    if not ready.startswith("{"):
        stop(node)
        raise AssertionError(f"inference node did not start: {tail(work / 'node.log')}")
    json.loads(ready)
    return node


def _answered(line: dict[str, Any]) -> int:
    return sum(int(n) for n in line.get("heavy_results", {}).values())


def inference_node_kill(work: Path) -> dict[str, Any]:
    anomaly, triage = work / "anomaly.tflite", work / f"{TRIAGE_MODEL}.onnx"
    write_anomaly_model(anomaly)
    write_triage_onnx(triage)
    gateway = start_gateway(work / "gw")
    with PeerRegistry(gateway.data_dir / "peers.db") as registry:
        token = registry.issue_token(Role.INFERENCE, ttl_s=600, uses=2)
    node = _start_node(gateway, work, triage, token)
    restarted = None
    edge = start_edge(f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(),
                      work / "edge", "--agents", "2000", "--tick-hz", "10", "--ticks", "150",
                      "--policy-deadline-ms", "45",
                      "--policy", "boids", "--policy", "escalate", "--model", str(anomaly),
                      "--drain-timeout", "60")  # fmt: skip
    lines = ProgressLines(edge)
    try:
        lines.until(lambda line: _answered(line) > 0, timeout=60)
        lines.for_seconds(1.0)
        answered_before = _answered(lines.seen[-1])
        kill9(node)
        stop(node)
        killed_at = time.monotonic()
        lines.for_seconds(1.5)
        restarted = _start_node(gateway, work, triage, token)
        lines.until(lambda line: line.get("heavy_results", {}).get("OK", 0) > answered_before)
        recovered_s = time.monotonic() - killed_at
        rest = lines.rest()
        returncode = edge.wait(30)
        summary = rest[-1]
        figures = delivery(gateway, summary, returncode=returncode,
                           sent_batches=summary["batches_sent"])  # fmt: skip
        rows, results = summary.get("heavy_rows", 0), summary.get("heavy_results", {})
        # rows asked for in the last ticks may still be out when the edge exits: it does
        # not wait for heavy answers at the end (reported, not counted as lost)
        outstanding = int(summary.get("heavy_outstanding_rows", 0))
        figures.update(
            heavy_requests=summary.get("heavy_requests"),
            heavy_rows=rows,
            heavy_results=results,
            heavy_outstanding_rows=summary.get("heavy_outstanding_rows"),
            recovery_s=round(recovered_s, 2),
        )
        return finish(
            "inference_node_kill", figures,
            answered_at_most_once_each=_answered(summary) + outstanding == rows and rows > 0,
            answers_after_the_restart=results.get("OK", 0) > answered_before,
        )  # fmt: skip
    finally:
        stop(edge)
        for running in (node, restarted):
            if running is not None:
                stop(running)
        stop(gateway.process)
