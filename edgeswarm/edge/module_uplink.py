"""Module distribution in the edge process: :class:`ModuleLink` on the uplink's live session.

``edgeswarm edge --module NAME[=SLOT]`` names the registry module that policy
slot ``SLOT`` (default 0: the first ``--policy``) runs; the ``--policy`` module
runs until the gateway's first assignment arrives (it is the bootstrap, and
the state layout every version must keep or migrate with ``es_migrate``).
:class:`ModuleUplink`:

- offers feature ``modules`` in HELLO (:attr:`ModuleUplink.features`) and is
  the ``module_handler`` of each session's :class:`GatewayClient`;
- passes MODULE_ASSIGN and BLOB_CHUNK to the sans-I/O :class:`ModuleLink` and
  sends the BLOB_REQUESTs it answers with; on a new session it first asks for
  the rest of every blob a disconnect cut (``.part`` files survive it);
- the tick loop steps the policies through :meth:`ModuleUplink.step`;
- between ticks (:meth:`ModuleUplink.before_step`) applies what is complete:
  the new module is compiled through the policy set's module cache (issue
  12's compile limits) and swapped in; a refusal changes nothing;
- after each step (:meth:`ModuleUplink.after_step`) sends the MODULE_REPORTs
  due; while no session is up they are dropped (a rollout judges only what
  reaches it).

Blobs are kept by digest in ``DATA_DIR/module-blobs`` (verified before use).
Metrics: ``edgeswarm_edge_module_agents{module,version}``,
``edgeswarm_edge_module_swaps_total{module}``, ``edgeswarm_edge_modules_refused_total``,
``edgeswarm_edge_module_state_moves_total{how}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeswarm.client.session import GatewayClient
from edgeswarm.registry.fetch import BlobCache
from edgeswarm.wire import FEATURE_MODULES, BlobChunkReceived, BlobRequest, ModulesAssigned

from .agent_table import AgentTable
from .config import EdgeConfig
from .module_link import ModuleLink
from .policy.sandbox import FuelBudget, HostCallCap
from .policy.set import PolicySet, PolicySpec

__all__ = ["ModuleUplink", "module_uplink_for", "parse_module_option"]

logger = logging.getLogger("edgeswarm.edge")


def parse_module_option(value: str) -> tuple[str, int]:
    """``NAME`` or ``NAME=SLOT`` (``--module``); ValueError when it is neither."""
    name, sep, slot = value.partition("=")
    if not name or (sep and not slot.isdigit()):
        raise ValueError(f"a module is NAME or NAME=SLOT (a policy index), got {value!r}")
    return name, int(slot) if sep else 0


def module_uplink_for(
    config: EdgeConfig, table: AgentTable, registry: CollectorRegistry
) -> ModuleUplink:
    """The edge's module uplink; inert (no feature offered) without ``--module``."""
    template = PolicySpec(
        b"",
        fuel=FuelBudget(per_agent=config.policy_fuel_per_agent),
        host_calls=HostCallCap(per_agent=config.policy_host_calls_per_agent),
        memory_limit=config.policy_memory_mb * 1024 * 1024,
        deadline_s=config.policy_deadline_s,
    )
    return ModuleUplink(
        table=table,
        blob_dir=config.data_dir / "module-blobs",
        slots=dict(config.modules),
        edge_labels=config.labels,
        spec_template=template,
        report_ticks=config.module_report_ticks,
        registry=registry,
    )


class ModuleUplink:
    """The edge's share of module distribution (see the module docstring)."""

    def __init__(
        self,
        *,
        table: AgentTable,
        blob_dir: Path,
        slots: dict[str, int],
        edge_labels: frozenset[str],
        spec_template: PolicySpec,
        report_ticks: int,
        registry: CollectorRegistry,
    ) -> None:
        self.table = table
        self.cache = BlobCache(blob_dir)
        self.slots = slots
        self.edge_labels = edge_labels
        self.spec_template = spec_template
        self.report_ticks = report_ticks
        self.link: ModuleLink | None = None
        """Set by :meth:`start`, once the policies are loaded."""
        self._client: GatewayClient | None = None
        self._refused_counted = 0
        self.agents = Gauge(
            "edgeswarm_edge_module_agents",
            "Agents of this edge running each registry module version.",
            ["module", "version"],
            registry=registry,
        )
        self.swaps = Counter(
            "edgeswarm_edge_module_swaps_total",
            "Module versions swapped in or rolled out between ticks.",
            ["module"],
            registry=registry,
        )
        self.state_moves = Counter(
            "edgeswarm_edge_module_state_moves_total",
            "Agents whose state crossed a state-layout change: migrated (es_migrate converted "
            "it) or restored (moved back to the old version with the state they left it with).",
            ["how"],
            registry=registry,
        )
        self._moves_counted = {"migrated": 0, "restored": 0}
        self.refused = Counter(
            "edgeswarm_edge_modules_refused_total",
            "Module assignments refused: a manifest that does not verify, a blob that never "
            "matched its digest, a module that cannot take its slot over.",
            registry=registry,
        )

    @property
    def features(self) -> tuple[str, ...]:
        """What to put in HELLO ``features`` (nothing when no module is named)."""
        return (FEATURE_MODULES,) if self.slots else ()

    def start(self, policies: PolicySet) -> None:
        """The policies are loaded: distribution may apply to them from now on."""
        if not self.slots:
            return
        for name, slot in self.slots.items():
            if not 0 <= slot < len(policies):
                raise ValueError(
                    f"--module {name}={slot}: the edge has {len(policies)} policy slot(s)"
                )
        self.link = ModuleLink(
            self.table,
            policies,
            self.cache,
            dict(self.slots),
            edge_labels=self.edge_labels,
            report_ticks=self.report_ticks,
            spec_template=self.spec_template,
        )

    def attach(self, client: GatewayClient) -> None:
        """Receive the module frames of ``client``."""
        client.module_handler = self._received

    def attach_with(
        self, other: Callable[[GatewayClient], None]
    ) -> Callable[[GatewayClient], None]:
        """The uplink's ``on_client``: ``other`` (the state link's), then :meth:`attach`."""

        def both(client: GatewayClient) -> None:
            other(client)
            self.attach(client)

        return both

    def _received(self, client: GatewayClient, event: ModulesAssigned | BlobChunkReceived) -> None:
        link = self.link
        if link is None:
            return
        requests: list[BlobRequest] = []
        if isinstance(event, ModulesAssigned):
            if client is not self._client:  # a new session: ask for what a disconnect cut
                self._client = client
                requests += link.resume()
            requests += link.on_assign(event.assign)
        elif client is self._client:
            requests += link.on_chunk(event.chunk)
        for request in requests:
            client.send_module(request)
        self._count_link_totals()

    def step(self, policies: PolicySet, table: AgentTable) -> None:
        """One tick's policy step, between what distribution does before and after it."""
        self.before_step()
        policies.step(table)
        self.after_step()

    def before_step(self) -> None:
        """Apply every assignment whose blobs are here (between ticks)."""
        link = self.link
        if link is None:
            return
        for name in link.apply():
            self.swaps.labels(name).inc()
            logger.info(
                "module applied",
                extra={"module_name": name, "versions": link.versions().get(name, {})},
            )
        self._count_link_totals()

    def after_step(self) -> None:
        """Send the reports due; refresh the per-version gauge."""
        link = self.link
        if link is None:
            return
        reports = link.after_tick()
        client = self._client
        if client is not None and client.closed_reason is None:
            for report in reports:
                client.send_module(report)
        self.agents.clear()  # a version no agent runs any more leaves the gauge
        for name, versions in link.versions().items():
            for version, agents in versions.items():
                self.agents.labels(name, version).set(agents)

    def versions(self) -> dict[str, dict[str, int]]:
        """Agents per module version (for the summary)."""
        return self.link.versions() if self.link is not None else {}

    def _count_link_totals(self) -> None:
        link = self.link
        if link is not None:
            for how, total in link.state_moves.items():
                self.state_moves.labels(how).inc(total - self._moves_counted.get(how, 0))
                self._moves_counted[how] = total
        if link is not None and link.refused > self._refused_counted:
            self.refused.inc(link.refused - self._refused_counted)
            self._refused_counted = link.refused
