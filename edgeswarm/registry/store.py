"""``modules.db``: the gateway's module registry on disk (blobs, manifests, trust, history).

One SQLite file in the gateway's data directory (opened like every durable
file, :mod:`edgeswarm.storage`), so that ``edgeswarm agents`` can publish
while the gateway runs:

- ``blobs``: content-addressed Wasm bytes, keyed by ``sha256:<hex>``; every
  read is checked against its key (a damaged blob is a
  :class:`RegistryStoreError`, never served);
- ``modules``: one row per ``name@version``: the manifest document as
  published (signature included), its digest, who published it and when;
- ``trust``: the trust policy's rules (:mod:`.trust`);
- ``deployments``: per module, the version the fleet runs and the rollout under
  way (its plan, as JSON; NULL when none), numbered so that edges name it;
- ``history``: every change, in order, with who did it (``publish``,
  ``trust``, ``distrust``, ``rollout``, ``rollback``, ``replicate``, ...);
- ``replica`` and ``stamps``: this registry's replica id and the stamp of each
  deployment record, for replication to peer gateways (:mod:`.stamps`,
  :mod:`.replica`).

A publish is one transaction after :func:`.admission.admit` accepted it: a
refused publish writes nothing, not even history (the refusal is a log line
and a metric of whoever served the request).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from edgeswarm.identity import fingerprint, public_key_text
from edgeswarm.resource import Resource
from edgeswarm.storage import Schema, open_operator_store, sqlite_errors, statements, transaction

from . import stamps
from .abi_check import ModuleCompiler, compile_here
from .admission import admit
from .errors import RegistryStoreError, RolloutError, UnknownModuleError, VersionConflictError
from .manifest import blob_digest, parse_manifest, version_key
from .replica import DeploymentRecord
from .rollout import RolloutPhase, RolloutPlan, plan_from_json, plan_to_json
from .rows import Deployment, HistoryEntry, PublishedModule
from .trust import TrustPolicy, TrustRule

_BLOBS = """CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
)"""
_MODULES = """CREATE TABLE modules (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES blobs(digest),
    manifest BLOB NOT NULL,
    publisher TEXT NOT NULL,
    published_at REAL NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
)"""
_TRUST = """CREATE TABLE trust (
    publisher BLOB NOT NULL,
    pattern TEXT NOT NULL,
    added_at REAL NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (publisher, pattern)
)"""
_HISTORY = """CREATE TABLE history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    detail TEXT NOT NULL
)"""
_DEPLOYMENTS = """CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    previous TEXT,
    rollout INTEGER NOT NULL,
    plan TEXT,
    updated_at REAL NOT NULL
)"""
SCHEMA = Schema(
    version=2,
    create=(
        _BLOBS,
        _MODULES,
        _TRUST,
        _HISTORY,
        _DEPLOYMENTS,
        stamps.REPLICA_TABLE,
        stamps.STAMPS_TABLE,
    ),
    tables=frozenset({"blobs", "modules", "trust", "history", "deployments"}),
    upgrades={1: statements(stamps.REPLICA_TABLE, stamps.STAMPS_TABLE)},
)
"""``modules.db``: blobs, manifests, the trust policy, the history of changes, what
the fleet runs (``deployments``: the stable version of each module and its rollout),
and since version 2 the replica id and deployment stamps of replication."""


class ModuleStore(Resource):
    """The registry of one gateway: publish, look up, trust, record history."""

    def __init__(self, path: Path) -> None:
        """Open (or create) ``modules.db``; :class:`RegistryStoreError` names the file."""
        self.path = path
        self._db = open_operator_store(
            path,
            SCHEMA,
            label="module registry",
            error=RegistryStoreError,
            start_over=" (or move it aside and publish the modules again)",
        )
        with self._errors():
            self.replica_id = stamps.replica_id(self._db)
            """The id this registry stamps its deployment changes with (replication)."""

    def close(self) -> None:
        self._db.close()

    def _errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(RegistryStoreError, f"module registry {self.path}")

    # --- trust ---------------------------------------------------------------

    def trust_policy(self) -> TrustPolicy:
        with self._errors():
            rows = self._db.execute("SELECT publisher, pattern FROM trust ORDER BY rowid")
            return TrustPolicy.of(TrustRule(bytes(p), pattern) for p, pattern in rows)

    def trust(self, publisher: bytes, pattern: str, *, actor: str) -> None:
        """Let ``publisher`` publish names matching ``pattern``."""
        with self._errors(), transaction(self._db) as db:
            db.execute(
                "INSERT OR IGNORE INTO trust VALUES (?, ?, ?, ?)",
                (publisher, pattern, time.time(), actor),
            )
            self._record(db, actor, "trust", pattern, "", {"publisher": public_key_text(publisher)})

    def distrust(self, publisher: bytes, pattern: str, *, actor: str) -> bool:
        """Remove a rule; whether there was one. Published modules stay."""
        with self._errors(), transaction(self._db) as db:
            removed = db.execute(
                "DELETE FROM trust WHERE publisher = ? AND pattern = ?", (publisher, pattern)
            ).rowcount
            if removed:
                detail = {"publisher": public_key_text(publisher)}
                self._record(db, actor, "distrust", pattern, "", detail)
        return bool(removed)

    def trust_rules(self) -> list[dict[str, Any]]:
        with self._errors():
            rows = self._db.execute(
                "SELECT publisher, pattern, added_at, added_by FROM trust ORDER BY rowid"
            ).fetchall()
        return [
            {
                "publisher": public_key_text(bytes(p)),
                "fingerprint": fingerprint(bytes(p)),
                "pattern": pattern,
                "added_at": at,
                "added_by": by,
            }
            for p, pattern, at, by in rows
        ]

    # --- publish -------------------------------------------------------------

    def publish(
        self,
        manifest_bytes: bytes,
        blob: bytes,
        *,
        actor: str,
        compile_module: ModuleCompiler = compile_here,
    ) -> PublishedModule:
        """Check (:func:`.admission.admit`, compiling with ``compile_module``) and store one
        module version, atomically.

        Publishing the same bytes again is a no-op that returns the stored row;
        the same ``name@version`` with another digest is a
        :class:`VersionConflictError`. Any refusal changes nothing.
        """
        manifest = admit(manifest_bytes, blob, self.trust_policy(), compile_module)
        stored_bytes = manifest.to_bytes()
        now = time.time()
        with self._errors(), transaction(self._db) as db:
            row = db.execute(
                "SELECT digest FROM modules WHERE name = ? AND version = ?",
                (manifest.name, manifest.version),
            ).fetchone()
            if row is not None:
                if row[0] != manifest.digest:
                    raise VersionConflictError(
                        f"{manifest.ref} is already published as {row[0]}; publish a new version"
                    )
            else:
                db.execute(
                    "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)",
                    (manifest.digest, len(blob), blob),
                )
                db.execute(
                    "INSERT INTO modules VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        manifest.name,
                        manifest.version,
                        manifest.digest,
                        stored_bytes,
                        public_key_text(manifest.publisher),
                        now,
                        actor,
                    ),
                )
                detail = {"digest": manifest.digest, "publisher": fingerprint(manifest.publisher)}
                self._record(db, actor, "publish", manifest.name, manifest.version, detail)
        return self.module(manifest.name, manifest.version)

    # --- reading -------------------------------------------------------------

    def _row(self, row: tuple[Any, ...]) -> PublishedModule:
        manifest_bytes, at, by = bytes(row[0]), row[1], row[2]
        return PublishedModule(parse_manifest(manifest_bytes), manifest_bytes, at, by)

    def module(self, name: str, version: str | None = None) -> PublishedModule:
        """``name@version``, or the highest version of ``name`` when ``version`` is None."""
        if version is None:
            versions = self.versions(name)
            if not versions:
                raise UnknownModuleError(f"no module {name!r} in {self.path}")
            return versions[-1]
        with self._errors():
            row = self._db.execute(
                "SELECT manifest, published_at, published_by FROM modules "
                "WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
        if row is None:
            raise UnknownModuleError(f"no module {name}@{version} in {self.path}")
        return self._row(row)

    def versions(self, name: str) -> list[PublishedModule]:
        """Every version of ``name``, in semver order."""
        with self._errors():
            rows = self._db.execute(
                "SELECT manifest, published_at, published_by FROM modules WHERE name = ?", (name,)
            ).fetchall()
        found = [self._row(row) for row in rows]
        return sorted(found, key=lambda p: version_key(p.manifest.version))

    def modules(self) -> list[PublishedModule]:
        """Every version of every module, by name then semver."""
        with self._errors():
            names = [r[0] for r in self._db.execute("SELECT DISTINCT name FROM modules")]
        return [module for name in sorted(names) for module in self.versions(name)]

    def blob(self, digest: str) -> bytes:
        """The Wasm bytes of ``digest``, checked against it."""
        with self._errors():
            row = self._db.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise UnknownModuleError(f"no blob {digest} in {self.path}")
        data = bytes(row[0])
        if blob_digest(data) != digest:
            raise RegistryStoreError(
                f"blob {digest} in {self.path} is damaged (it reads back as {blob_digest(data)});"
                " publish the module again or restore the file"
            )
        return data

    # --- deployments and rollouts ----------------------------------------------

    def data_version(self) -> int:
        """Changes when another connection (an ``edgeswarm agents`` command) committed."""
        with self._errors():
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def deployments(self) -> list[Deployment]:
        with self._errors():
            rows = self._db.execute(
                "SELECT name, version, previous, rollout, plan FROM deployments ORDER BY name"
            ).fetchall()
        return [
            Deployment(n, v, p, r, plan_from_json(plan) if plan else None)
            for n, v, p, r, plan in rows
        ]

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments() if d.name == name), None)

    def start_rollout(self, plan: RolloutPlan, *, actor: str) -> Deployment:
        """Start rolling ``plan.to_version`` out (the first version of a module is simply
        deployed: every agent runs it). One rollout per module at a time."""
        self.module(plan.name, plan.to_version)  # published, or UnknownModuleError
        current = self.deployment(plan.name)
        with self._errors(), transaction(self._db) as db:
            if current is None:
                db.execute(
                    "INSERT INTO deployments VALUES (?, ?, NULL, 0, NULL, ?)",
                    (plan.name, plan.to_version, time.time()),
                )
                self._record(db, actor, "deploy", plan.name, plan.to_version, {})
                stamps.bump(db, plan.name, self.replica_id)
            else:
                if current.plan is not None:
                    raise RolloutError(
                        f"a rollout of {plan.name} to {current.plan.to_version} is under way: "
                        "roll it back first (edgeswarm agents rollback)"
                    )
                if current.version != plan.from_version:
                    raise RolloutError(
                        f"{plan.name} runs {current.version}, not {plan.from_version}"
                    )
                db.execute(
                    "UPDATE deployments SET rollout = rollout + 1, plan = ?, updated_at = ? "
                    "WHERE name = ?",
                    (plan_to_json(plan), time.time(), plan.name),
                )
                stages = [[stage.share, stage.hold_ticks] for stage in plan.stages]
                detail = {"from": plan.from_version, "stages": stages}
                self._record(db, actor, "rollout", plan.name, plan.to_version, detail)
                stamps.bump(db, plan.name, self.replica_id)
        found = self.deployment(plan.name)
        assert found is not None
        return found

    def end_rollout(
        self, name: str, rollout: int, phase: RolloutPhase, *, actor: str, detail: str
    ) -> bool:
        """Record how rollout ``rollout`` of ``name`` ended (complete or rolled back);
        whether it was still the one under way (a stale decision changes nothing)."""
        current = self.deployment(name)
        if current is None or current.plan is None or current.rollout != rollout:
            return False
        plan = current.plan
        with self._errors(), transaction(self._db) as db:
            if phase is RolloutPhase.COMPLETE:
                db.execute(
                    "UPDATE deployments SET version = ?, previous = ?, plan = NULL, "
                    "updated_at = ? WHERE name = ?",
                    (plan.to_version, plan.from_version, time.time(), name),
                )
            else:
                db.execute(
                    "UPDATE deployments SET plan = NULL, updated_at = ? WHERE name = ?",
                    (time.time(), name),
                )
            action = "complete" if phase is RolloutPhase.COMPLETE else "rollback"
            info = {"rollout": rollout, "from": plan.from_version, "why": detail}
            self._record(db, actor, action, name, plan.to_version, info)
            stamps.bump(db, name, self.replica_id)
        return True

    def rollback(self, name: str, *, actor: str) -> Deployment:
        """The operator's rollback: end the rollout under way, or, with none, return the
        whole fleet to the version before the last completed one."""
        current = self.deployment(name)
        if current is None:
            raise UnknownModuleError(f"{name} is not deployed")
        if current.plan is not None:
            self.end_rollout(
                name, current.rollout, RolloutPhase.ROLLED_BACK, actor=actor, detail="operator"
            )
        elif current.previous is not None:
            with self._errors(), transaction(self._db) as db:
                db.execute(
                    "UPDATE deployments SET version = ?, previous = NULL, "
                    "rollout = rollout + 1, updated_at = ? WHERE name = ?",
                    (current.previous, time.time(), name),
                )
                detail = {"from": current.version}
                self._record(db, actor, "rollback", name, current.previous, detail)
                stamps.bump(db, name, self.replica_id)
        else:
            raise RolloutError(f"{name} has no rollout under way and no previous version")
        found = self.deployment(name)
        assert found is not None
        return found

    # --- replication -----------------------------------------------------------

    def refs(self) -> dict[tuple[str, str], str]:
        """Every ``(name, version)`` held, with its blob digest."""
        with self._errors():
            rows = self._db.execute("SELECT name, version, digest FROM modules").fetchall()
        return {(n, v): d for n, v, d in rows}

    def deployment_records(self) -> list[DeploymentRecord]:
        """Every deployment record with its stamp (what an index carries)."""
        with self._errors():
            return stamps.records(self._db, self.replica_id)

    def apply_deployment(self, record: DeploymentRecord, *, actor: str) -> bool:
        """Take a peer's deployment record if its stamp is greater than ours (one
        transaction, with a ``replicate`` history entry); whether it changed anything.

        :class:`UnknownModuleError` when a version it names is not held here (fetch
        it first), :class:`RolloutError` for a plan that is not valid; both change nothing.
        """
        needed = record.versions()
        with self._errors(), transaction(self._db) as db:
            held = {
                v
                for (v,) in db.execute("SELECT version FROM modules WHERE name = ?", (record.name,))
            }
            if not needed <= held:
                absent = ", ".join(sorted(needed - held))
                raise UnknownModuleError(f"{record.name} {absent} not held here")
            if record.stamp <= stamps.stamp_of(db, record.name, self.replica_id):
                return False
            stamps.write(db, record, time.time())
            to_version = plan_from_json(record.plan).to_version if record.plan else None
            detail = {
                "rollout": record.rollout,
                "previous": record.previous,
                "to_version": to_version,
                "stamp": list(record.stamp),
            }
            self._record(db, actor, "replicate", record.name, record.version, detail)
        return True

    # --- history -------------------------------------------------------------

    def record(
        self, actor: str, action: str, name: str, version: str, detail: dict[str, Any]
    ) -> None:
        """Add one entry to the history (rollouts and rollbacks write theirs here)."""
        with self._errors(), transaction(self._db) as db:
            self._record(db, actor, action, name, version, detail)

    @staticmethod
    def _record(
        db: sqlite3.Connection,
        actor: str,
        action: str,
        name: str,
        version: str,
        detail: dict[str, Any],
    ) -> None:
        db.execute(
            "INSERT INTO history (at, actor, action, name, version, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, name, version, json.dumps(detail, sort_keys=True)),
        )

    def history(self, name: str | None = None, *, limit: int = 1000) -> list[HistoryEntry]:
        """The last ``limit`` changes (of ``name`` only, when given), oldest first."""
        query = "SELECT seq, at, actor, action, name, version, detail FROM history"
        args: tuple[Any, ...] = ()
        if name is not None:
            query += " WHERE name = ?"
            args = (name,)
        query += " ORDER BY seq DESC LIMIT ?"
        with self._errors():
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [
            HistoryEntry(seq, at, actor, action, n, v, json.loads(detail))
            for seq, at, actor, action, n, v, detail in reversed(rows)
        ]
