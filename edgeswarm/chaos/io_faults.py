"""Scenarios that fault an edge's device I/O: the MQTT broker between the sensors and
the edge is restarted under load.

A real Mosquitto (Debian package ``mosquitto``), the sensor simulator publishing the
flocking world (``edgeswarm.edge.io.sensor_sim``), an edge ticking on its readings
(``--io mqtt://…``) and a gateway: the broker is stopped for 2 s and started again on
the same port. The edge must reconnect and tick again, the sensors too, and every
observation the edge sent must reach the gateway once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgeswarm.chaos.processes import ProgressLines, start_edge, start_gateway, stop, tail
from edgeswarm.chaos.verdict import delivery, finish, rate
from edgeswarm.edge.io.mosquitto import Mosquitto, mosquitto_binary

BROKER_DOWN_S = 2.0
AGENTS = 500
SENSOR_HZ, SENSOR_S = 20, 16


def _ticks_per_s(lines: list[dict[str, Any]], start: float, end: float) -> float:
    window = [line for line in lines if start <= line["at"] <= end]
    if len(window) < 2:
        return 0.0
    span = float(window[-1]["at"]) - float(window[0]["at"])
    return round((int(window[-1]["tick"]) - int(window[0]["tick"])) / span, 1) if span else 0.0


def mqtt_broker_restart(work: Path) -> dict[str, Any]:
    binary = mosquitto_binary()
    if binary is None:
        raise AssertionError("mosquitto is not installed (Debian package mosquitto)")
    (work / "mqtt").mkdir(parents=True)
    broker = Mosquitto(binary, work / "mqtt")
    broker.start()
    gateway = start_gateway(work / "gw")
    with (work / "sensors.log").open("ab") as sensors_log:
        sensors = subprocess.Popen(
            [sys.executable, "-m", "edgeswarm.edge.io.sensor_sim",
             "--broker", f"127.0.0.1:{broker.port}", "--prefix", "chaos",
             "--agents", str(AGENTS), "--hz", str(SENSOR_HZ), "--duration", str(SENSOR_S)],
            stdout=sensors_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    edge = start_edge(f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(),
                      work / "edge", "--agents", str(AGENTS), "--tick-hz", "0",
                      "--io", f"{broker.url}/chaos", "--duration", "12",
                      "--drain-timeout", "60")  # fmt: skip
    lines = ProgressLines(edge)
    try:
        lines.until(lambda line: line["tick"] >= 10)
        start = time.monotonic()
        lines.for_seconds(1.0)
        down_at = time.monotonic()
        tick_at_stop = lines.seen[-1]["tick"]
        broker.stop()
        lines.for_seconds(BROKER_DOWN_S)
        up_at = time.monotonic()
        tick_while_down = lines.seen[-1]["tick"]
        broker.start()
        lines.until(lambda line: line["tick"] > tick_while_down + 5, timeout=30)
        recovered_at = lines.seen[-1]["at"]
        rest = lines.rest()
        returncode = edge.wait(30)
        summary = rest[-1]
        sensors.wait(30)  # it publishes for its --duration, then prints its summary
        said = [ln for ln in (work / "sensors.log").read_text().splitlines() if ln.startswith("{")]
        sensed = json.loads(said[-1]) if said else {}
        figures = delivery(gateway, summary, returncode=returncode,
                           sent_batches=summary["batches_sent"])  # fmt: skip
        figures.update(
            ticks_per_s_before=_ticks_per_s(rest, start, down_at),
            ticks_per_s_during=_ticks_per_s(rest, down_at + 0.5, up_at),
            ticks_per_s_after=_ticks_per_s(rest, recovered_at, rest[-2]["at"]),
            throughput_before=rate(rest, start, down_at),
            throughput_after=rate(rest, recovered_at, rest[-2]["at"]),
            ticks_while_broker_down=tick_while_down - tick_at_stop,
            recovery_s=round(recovered_at - up_at, 2),
        )
        figures["sensor_reconnects"] = sensed.get("reconnects")
        sensors_ran_on = sensed.get("ticks", 0) >= 0.8 * SENSOR_HZ * SENSOR_S
        if not sensors_ran_on:
            figures["sensors_log"] = tail(work / "sensors.log", 600)
        return finish(
            "mqtt_broker_restart", figures,
            sensors_reconnected=sensed.get("reconnects", 0) >= 1 and sensors_ran_on,
            edge_ticked_after=figures["ticks_per_s_after"] > 0,
        )  # fmt: skip
    finally:
        stop(edge)
        sensors.terminate()
        sensors.wait(10)
        stop(gateway.process)
        broker.stop()
