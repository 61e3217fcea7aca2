"""``edgeswarm agents rollout|rollback``: which module version a gateway's fleet runs.

Both work on the gateway's ``modules.db`` in ``--data-dir``, beside a running
gateway: it notices the change within its ``--module-poll`` interval and sends
every connected edge its new assignment (``docs/modules.md``, section 7)::

    edgeswarm agents rollout policy 1.0.0                 # the first version: deployed
    edgeswarm agents rollout policy 1.1.0 --stages 10,50,100 --hold 20
    edgeswarm agents rollout policy 1.1.0 --share 0.1     # 10 %, then everyone
    edgeswarm agents rollout policy 1.1.0 --labels canary # only edges labelled canary
    edgeswarm agents rollback policy

A rollout advances on the edges' reports (one report is one rollout tick) and
is rolled back by the gateway itself when the new version's faults per
agent-tick pass ``--fault-threshold`` within ``--window`` ticks. Every change
goes to the history with ``--actor`` (``edgeswarm agents history``).

Exit status (issue 15's, ``cli/exits.py``): 0 done; 1 it could not be done (a
version not published, a rollout already under way, nothing to roll back, a
damaged ``modules.db``); 2 usage (shares that do not grow, a bad threshold).
"""

from __future__ import annotations

from typing import Annotated

import typer

from .exits import Usage, exits_on_error
from .modules import DEFAULT_DATA_DIR, Actor, AsJson, GatewayDir, _actor, _emit, _store

__all__ = ["register_rollout_commands"]


def _stages(share: float | None, stages: str | None, hold: int) -> tuple[tuple[float, int], ...]:
    """The (share, hold) of each stage the options ask for."""
    if share is not None and stages is not None:
        raise Usage("give --share or --stages, not both")
    if stages is not None:
        try:
            percents = [float(part) for part in stages.split(",") if part.strip()]
        except ValueError:
            raise Usage(
                f"--stages is percents separated by commas (10,50,100), got {stages!r}"
            ) from None
        if not percents:
            raise Usage("--stages needs at least one percent")
        return tuple((percent / 100.0, hold) for percent in percents)
    if share is not None:
        return ((share, hold), (1.0, hold)) if share < 1.0 else ((1.0, hold),)
    return ((1.0, hold),)


def rollout(
    name: Annotated[str, typer.Argument(help="Module name in the registry.")],
    version: Annotated[str, typer.Argument(help="Published version to roll out.")],
    share: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Share of agents (0-1) that run it first; then everyone."
        ),
    ] = None,
    stages: Annotated[
        str | None, typer.Option(help="Percents of agents, growing, e.g. 10,50,100.")
    ] = None,
    hold: Annotated[
        int,
        typer.Option(min=0, help="Rollout ticks (edge reports) each stage holds before the next."),
    ] = 10,
    labels: Annotated[
        str | None, typer.Option(help="Only edges with one of these labels (comma-separated).")
    ] = None,
    fault_threshold: Annotated[
        float, typer.Option(min=0.0, help="Faults per agent-tick above which it is rolled back.")
    ] = 0.01,
    window: Annotated[
        int, typer.Option(min=1, help="Rollout ticks the fault rate is judged over (the bound).")
    ] = 10,
    min_agent_ticks: Annotated[
        int, typer.Option(min=1, help="Agent-ticks a judgement needs before the window is full.")
    ] = 100,
    data_dir: GatewayDir = DEFAULT_DATA_DIR,
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Roll a published version out to the fleet (the first version of a module: deploy it).

    Examples:

        edgeswarm agents rollout policy 1.0.0 --data-dir var/gateway
        edgeswarm agents rollout policy 1.1.0 --stages 10,50,100 --hold 20 --json
        edgeswarm agents rollout policy 1.1.0 --share 0.1 --labels canary
    """
    from edgeswarm.registry import RolloutError, RolloutPlan, Stage

    with exits_on_error(f"rollout {name} {version}"), _store(data_dir) as store:
        try:
            current = store.deployment(name)
            plan = RolloutPlan(
                name=name,
                from_version=current.version if current is not None else "",
                to_version=version,
                stages=tuple(Stage(s, h) for s, h in _stages(share, stages, hold)),
                labels=frozenset(part for part in (labels or "").split(",") if part),
                fault_threshold=fault_threshold,
                window_ticks=window,
                min_agent_ticks=min_agent_ticks,
            )
        except RolloutError as exc:
            raise Usage(str(exc)) from exc
        deployment = store.start_rollout(plan, actor=_actor(actor))
    record = deployment.to_json()
    if current is None:
        text = f"deployed {name}@{version}: every agent runs it"
    else:
        shares = ", ".join(f"{stage.share:.0%}" for stage in plan.stages)
        text = f"rollout {deployment.rollout} of {name}: {current.version} -> {version} ({shares})"
    _emit(record, as_json, text)


def rollback(
    name: Annotated[str, typer.Argument(help="Module name in the registry.")],
    data_dir: GatewayDir = DEFAULT_DATA_DIR,
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """End the rollout under way, or with none return the fleet to the version before the
    last completed rollout.

    Examples:

        edgeswarm agents rollback policy --data-dir var/gateway --json
    """
    with exits_on_error(f"rollback {name}"), _store(data_dir) as store:
        deployment = store.rollback(name, actor=_actor(actor))
    _emit(deployment.to_json(), as_json, f"{name}: every agent runs {deployment.version}")


def register_rollout_commands(agents: typer.Typer) -> None:
    """Add ``rollout`` and ``rollback`` to the ``agents`` group."""
    for command in (rollout, rollback):
        agents.command()(command)
