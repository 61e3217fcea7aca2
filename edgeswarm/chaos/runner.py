"""``scripts/chaos``: run the chaos scenarios, one JSON line each.

A scenario that needs kernel faults (nftables, tc, tmpfs) runs in a network and mount
namespace of its own: this module starts itself again under ``unshare --net --mount``
with ``--inside NAME``, so every rule, qdisc and mount dies with the namespace, and the
processes of the scenario only see its private loopback. Where that cannot be done
(not root, no ``unshare``, a tool missing) the scenario says ``skipped`` and why.

Exit codes: 0 every scenario run passed (skipped ones do not count as failures);
1 a scenario failed; 2 a wrong option or an unknown scenario name.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeswarm.chaos.catalog import SCENARIOS, Scenario
from edgeswarm.chaos.faults import loopback_up, missing_tools
from edgeswarm.chaos.processes import is_root
from edgeswarm.chaos.verdict import failed, skipped

EPILOG = """\
examples:
  scripts/chaos --list
  scripts/chaos --json
  scripts/chaos --json gateway_kill9 packet_loss_10
  scripts/chaos --json | jq -c 'select(.passed == false)'

exit codes: 0 all run scenarios passed (skipped ones say why), 1 one failed,
2 a wrong option or unknown scenario.
"""

NAMESPACE_TIMEOUT_S = 300.0


def run_here(scenario: Scenario, inside_namespace: bool) -> dict[str, Any]:
    """Run ``scenario`` in this process, in a fresh temporary directory."""
    if scenario.skip_reason:
        return skipped(scenario.name, scenario.skip_reason)
    if inside_namespace:
        loopback_up()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"chaos-{scenario.name}-") as work:
        try:
            result = scenario.run(Path(work))
        except Exception as error:  # the line says what broke; the next scenario runs
            result = failed(scenario.name, f"{type(error).__name__}: {error}")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def run_in_namespace(scenario: Scenario) -> dict[str, Any]:
    """Run ``scenario`` in a child under ``unshare --net --mount``; its last JSON line."""
    if not is_root():
        return skipped(scenario.name, "needs root for a network and mount namespace")
    why = missing_tools("unshare", "ip", *scenario.tools)
    if why:
        return skipped(scenario.name, why)
    argv = ["unshare", "--net", "--mount", "--", sys.executable, "-m", "edgeswarm.chaos",
            "--inside", scenario.name]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=NAMESPACE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return failed(scenario.name, f"ran past {NAMESPACE_TIMEOUT_S} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        if "unshare" in done.stderr and "Operation not permitted" in done.stderr:
            return skipped(scenario.name, "this machine refuses new namespaces (unshare)")
        return failed(scenario.name, done.stderr.strip()[-800:])
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run(scenario: Scenario) -> dict[str, Any]:
    if scenario.namespace and not scenario.skip_reason:
        return run_in_namespace(scenario)
    return run_here(scenario, inside_namespace=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos",
        description="Run real gateways and edges, inject faults, and check that nothing "
        "acknowledged is lost and nothing is applied twice. One JSON line per scenario "
        "(--json) or one readable line each.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help="scenarios to run (default: all, in order; see --list)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--inside", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    by_name = {scenario.name: scenario for scenario in SCENARIOS}
    if args.inside:
        print(json.dumps(run_here(by_name[args.inside], inside_namespace=True)), flush=True)
        return 0
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:24} {scenario.summary}")
        return 0
    unknown = [name for name in args.scenarios if name not in by_name]
    if unknown:
        print(f"unknown scenario {', '.join(unknown)}: see scripts/chaos --list", file=sys.stderr)
        return 2
    chosen = [by_name[name] for name in args.scenarios] or list(SCENARIOS)
    failed = 0
    for scenario in chosen:
        if not args.json:
            print(f"{scenario.name}: running", file=sys.stderr, flush=True)
        result = run(scenario)
        failed += result.get("passed") is False
        print(json.dumps(result) if args.json else _readable(result), flush=True)
    return 1 if failed else 0


def _readable(result: dict[str, Any]) -> str:
    if result.get("skipped"):
        return f"{result['scenario']}: skipped ({result['skipped']})"
    verdict = "passed" if result["passed"] else "FAILED"
    figures = ", ".join(f"{k}={v}" for k, v in result.items() if k not in ("scenario", "passed"))
    return f"{result['scenario']}: {verdict}; {figures}"
