"""Mutation testing of the modules that carry edgeswarm's promises (``scripts/mutate``).

Each module runs in a scratch directory of its own, ``var/mutate/MODULE/``: a
copy of ``edgeswarm/`` and ``tests/`` and a ``pyproject.toml`` whose
``[tool.mutmut]`` mutates that one file and selects its tests. mutmut (3.x)
writes every mutant of the file into ``mutants/``, runs the selected tests once
to learn which test reaches which function, then runs, for each mutant, the
tests that reach its function; a mutant is *killed* when one of them fails (or
times out) and *survives* when all pass. Results persist in the scratch
directory: a second run of the same source only runs the mutants not yet
checked, a changed function's mutants again.

The report (also ``var/mutate/report.json``) gives, per module, the killed
share ``killed / (killed + survived + reached by no test - equivalent)`` and every
survivor, with the diff that ``mutmut show`` prints; ``docs/testing.md`` says which survivors are
equivalent mutants and which asked for a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "var" / "mutate"

MODULES: dict[str, list[str]] = {
    "wire.codec": ["tests/test_wire_codec.py", "tests/test_wire_session.py"],
    "wire.framing": ["tests/test_wire_codec.py"],
    "wire.arrays": ["tests/test_wire_codec.py"],
    "wire.unpack": ["tests/test_wire_codec.py", "tests/test_preauth.py"],
    "wire.session": ["tests/test_wire_session.py", "tests/test_wire_state.py"],
    "gateway.log.store": [
        "tests/test_observation_log.py",
        "tests/test_observation_log_failures.py",
    ],
    "gateway.log.holdings": ["tests/test_observation_log.py", "tests/test_holdings.py"],
    "storage.checkpoint": [
        "tests/test_checkpointer.py",
        "tests/test_observation_log.py",
        "tests/test_spool.py",
    ],
    "gateway.log.index": [
        "tests/test_observation_log.py",
        "tests/test_observation_log_failures.py",
        "tests/test_damaged_storage.py",
    ],
    "gateway.log.recovery": ["tests/test_observation_log.py"],
    "edge.spool": ["tests/test_spool.py", "tests/test_uplink.py", "tests/test_spool_promises.py"],
    "storage.sqlite": ["tests/test_storage.py", "tests/test_spool.py"],
    "state.document": ["tests/test_state_crdt.py", "tests/test_state_sync.py"],
    "edge.policy.sandbox": [
        "tests/test_sandbox.py",
        "tests/test_wasm_sandbox.py",
        "tests/test_wasm_policy.py",
    ],
    "client.reconnect": ["tests/test_reconnect.py", "tests/test_uplink_gateway.py"],
}
"""Module (under edgeswarm/) -> the test files that guard it."""

_CACHE = "a cache bypassed or emptied: the value is read again from where it lives"
_PAGES = "memory limits are whole Wasm pages, so limit // 16 == limit / 16"
_CAST = "a memoryview cast to 'b' or 'B' packs as the same msgpack bin"
_GUARDED = "unreachable: array_shape checked everything np.frombuffer could refuse"
_LOG = "edgeswarm.gateway.log.store.xǁObservationLogǁ"
_CKPT = "edgeswarm.storage.checkpoint.xǁCheckpointerǁ"
_FALSY = "None and False are both false"
_WAL_BACKUP = (
    "the checkpointer's own WAL-full detection: the writer's check of the -wal file's "
    "size restarts the WAL anyway; only who restarts it changes"
)
_UNUSED = "the value is never read on any path that reaches this line"
_SPOOL = "edgeswarm.edge.spool.xǁSpoolǁ"
_CLOSE = "closing twice is harmless whether or not close() remembers it was closed"
_ERRCODE = "the default is never used: every sqlite3.Error raised here carries sqlite_errorcode"
_DOC = "edgeswarm.state.document.xǁSwarmDocumentǁ"
_SESSION = "edgeswarm.wire.session.xǁSessionǁ"
_HOLDINGS = "edgeswarm.gateway.log.holdings.xǁ"
EQUIVALENT: dict[str, str] = {
    "edgeswarm.edge.policy.sandbox.x_memory_near_limit__mutmut_6": _PAGES,
    "edgeswarm.edge.policy.sandbox.x_charge_fuel__mutmut_2": (
        "typing.cast returns its argument at run time, whatever the type named"
    ),
    f"{_DOC}_map__mutmut_1": _CACHE,
    f"{_DOC}_map__mutmut_2": _CACHE,
    f"{_DOC}_live__mutmut_1": _CACHE,
    f"{_DOC}_live__mutmut_2": _CACHE,
    f"{_DOC}_own_value__mutmut_1": _CACHE,
    f"{_DOC}_own_value__mutmut_2": _CACHE,
    f"{_DOC}_own_value__mutmut_3": _CACHE,
    f"{_DOC}_write_own__mutmut_3": _CACHE,
    f"{_DOC}_own_value__mutmut_7": "get(entry, None) and get(entry, 0): both read as 0",
    f"{_DOC}_own_value__mutmut_9": "get(entry) and get(entry, 0): both read as 0",
    f"{_DOC}_entries__mutmut_6": "str(Map) is always a JSON object: the else is unreachable",
    f"{_DOC}counter_add__mutmut_14": "delta == 0 returned before: > 0 and >= 0 agree",
    f"{_DOC}set_add__mutmut_23": "add tags only have to grow: +2 grows too",
    f"{_SESSION}_receive__mutmut_69": (
        "a client has its HELLO whenever WELCOME arrives (the state table allows WELCOME"
        " only after HELLO); a server never receives WELCOME"
    ),
    **{
        f"{_SESSION}_receive__mutmut_{n}": (
            "a received frame that SENDER_ROLES restricts comes after HELLO (the state table"
            " allows nothing else before it), so the client's role is known: 'unknown' is"
            " unreachable"
        )
        for n in (27, 29, 30)
    },
    f"{_SESSION}_violation__mutmut_4": (
        "every RemoteProtocolError raised has a message: the class-name fallback is unreachable"
    ),
    **{
        f"edgeswarm.wire.framing.xǁFrameReaderǁnext_payload__mutmut_{n}": (
            "when the buffer is compacted only costs time and memory, never changes a payload"
        )
        for n in (24, 25, 26, 27, 28)
    },
    **{
        f"edgeswarm.wire.framing.xǁFrameReaderǁfeed__mutmut_{n}": (
            "unreachable: next_payload resets the buffer whenever it is read to its end"
        )
        for n in (3, 4)
    },
    "edgeswarm.wire.arrays.x_encode_array__mutmut_26": _CAST,
    "edgeswarm.wire.arrays.x_wire_array__mutmut_18": _CAST,
    "edgeswarm.wire.arrays.x_wire_array__mutmut_5": (
        "only decides whether an array takes the no-copy path; both give the same map"
    ),
    "edgeswarm.wire.codec.x_encode_payload__mutmut_15": "use_bin_type=True is msgpack's default",
    **{
        f"edgeswarm.wire.unpack.x_unpack_payload__mutmut_{n}": (
            "msgpack's default (raw=False, strict_map_key=True, use_list=True)"
        )
        for n in (17, 18, 19)
    },
    "edgeswarm.wire.unpack.x_unpack_payload__mutmut_8": "raw=None is false, as raw=False",
    "edgeswarm.wire.unpack.x_unpack_payload__mutmut_21": (
        "a bin can never be longer than the payload that holds it"
    ),
    "edgeswarm.wire.arrays.x_array_view__mutmut_10": _GUARDED,
    "edgeswarm.wire.arrays.x_array_view__mutmut_11": _GUARDED,
    f"{_SPOOL}__init____mutmut_55": "None and False are both false",
    f"{_SPOOL}close__mutmut_2": _CLOSE,
    f"{_SPOOL}close__mutmut_3": _CLOSE,
    f"{_SPOOL}__init____mutmut_58": (
        "the first drop is logged whenever the monotonic clock is past 2 s (always, in practice)"
    ),
    f"{_SPOOL}_open__mutmut_4": (
        "every write is bracketed by an explicit BEGIN IMMEDIATE / COMMIT: the sqlite3 "
        "module's implicit transactions never start"
    ),
    **{f"{_SPOOL}_open__mutmut_{n}": _ERRCODE for n in (63, 66, 69)},
    f"{_SPOOL}append__mutmut_22": "an overflow of 0 drops nothing either way",
    f"{_SPOOL}append__mutmut_82": (
        "the last dropped seq is held, so never in the unflushed ACKs: > and >= agree"
    ),
    f"{_SPOOL}pending__mutmut_13": "SQLite reads any negative LIMIT as no limit",
    **{
        f"{_SPOOL}__init____mutmut_{n}": "only the checkpoint thread's name (seen in debuggers)"
        for n in (59, 65, 73, 74)
    },
    f"{_SPOOL}__init____mutmut_66": (
        "the checkpointer's busy timeout: a PASSIVE checkpoint never waits on a lock"
    ),
    f"{_SPOOL}__init____mutmut_81": "_closed is only read as a truth value: None is false",
    **{
        name: (
            "only when the background checkpoint runs (every 255/257/128 commits instead of"
            " 256): nothing stored changes, the WAL bound is kept by wal_limit_bytes"
        )
        for name in (
            f"{_SPOOL}__init____mutmut_80",
            *(f"{_SPOOL}_count_commit__mutmut_{n}" for n in (3, 4, 6)),
        )
    },
    f"{_SPOOL}_open__mutmut_13": (
        "SQLite reads an unknown synchronous keyword as NORMAL, the value given"
    ),
    f"{_SPOOL}_open__mutmut_14": "SQLite pragma values ignore letter case",
    **{
        name: (
            "an acked or dropped payload stays in the bounded memory cache until pushed out;"
            " it is never served again: only which live batches come from memory changes"
        )
        for name in (
            f"{_SPOOL}ack__mutmut_4",
            f"{_SPOOL}ack_through__mutmut_3",
            f"{_SPOOL}append_many__mutmut_86",
        )
    },
    **{
        f"{_SPOOL}append_many__mutmut_{n}": (
            "victims() returns nothing when the group fits (overflow <= 0)"
        )
        for n in (27, 32)
    },
    "edgeswarm.storage.checkpoint.x__lower_thread_priority__mutmut_4": (
        "lowering one's own priority never fails on Linux: the suppress never catches"
    ),
    **{
        f"edgeswarm.storage.sqlite.x_is_corruption__mutmut_{n}": (
            "an error without a code: the default 1, None or 0 all say no corruption"
        )
        for n in (5, 11, 12)
    },
    **{
        f"edgeswarm.storage.sqlite.x_open_operator_store__mutmut_{n}": (
            "SQLite ignores a page size that is no power of two; its default is 4096"
        )
        for n in (10, 22)
    },
    "edgeswarm.storage.sqlite.x_open_operator_store__mutmut_24": (
        "PRAGMA values are case-insensitive"
    ),
    "edgeswarm.gateway.log.index.x_open_index__mutmut_4": (
        "SQLite's default page size is 4096, PAGE_SIZE"
    ),
    "edgeswarm.gateway.log.index.x__signed__mutmut_7": (
        "differs only for a payload whose XXH3-64 is exactly 2**63: no test can find one"
    ),
    **{f"{_LOG}__init____mutmut_{n}": _FALSY for n in (49, 56, 58)},
    f"{_CKPT}restart_wal__mutmut_1": _FALSY,
    **{
        f"{_CKPT}__init____mutmut_{n}": (
            "the default thread name: every caller names its thread (only seen in debuggers)"
        )
        for n in (1, 2)
    },
    f"{_CKPT}__init____mutmut_16": (
        "the checkpointer's busy timeout: a PASSIVE checkpoint never waits on a lock"
    ),
    f"{_CKPT}__init____mutmut_17": (
        "the checkpointer's connection runs PRAGMAs only: the sqlite3 module's implicit"
        " transactions never start"
    ),
    f"{_CKPT}__init____mutmut_24": _FALSY,
    f"{_LOG}_run_writer__mutmut_2": _FALSY,
    **{f"{_CKPT}_run__mutmut_{n}": _WAL_BACKUP for n in (3, 7, 8, 9, 10, 11)},
    f"{_CKPT}_wal_file_bytes__mutmut_1": "1 is never above wal_limit_bytes (>= 1)",
    "edgeswarm.gateway.log.recovery.x_recover_segments__mutmut_11": (
        "-1 and -2 are both below every end (>= 1)"
    ),
    **{
        f"edgeswarm.gateway.log.recovery.x_recover_segments__mutmut_{n}": (
            "newest is a key of ends unless it is 0, and resume() ignores the end of segment 0"
        )
        for n in (63, 65, 66)
    },
    f"{_LOG}__init____mutmut_31": _FALSY,
    f"{_LOG}__init____mutmut_40": (
        "SQLite reads journal_size_limit=None as 0: the WAL is cut back further, the bound holds"
    ),
    **{
        name: (
            "only when the background checkpoint runs (one commit sooner): nothing stored"
            " changes, the WAL bound is kept by wal_limit_bytes"
        )
        for name in (f"{_LOG}__init____mutmut_35", f"{_LOG}_commit__mutmut_107")
    },
    **{f"{_LOG}_commit__mutmut_{n}": _UNUSED for n in (14, 15)},
    f"{_LOG}_commit__mutmut_33": "insert_rows of no rows inserts nothing and yields nothing",
    f"{_LOG}_write_group__mutmut_4": (
        "a lone record that fails is written alone once more: the same failure, counted once"
    ),
    f"{_LOG}open_epoch__mutmut_6": (
        "the epoch is written inside an explicit BEGIN IMMEDIATE / COMMIT: the sqlite3"
        " module's implicit transactions never start"
    ),
    **{f"{_LOG}_write_group__mutmut_{n}": _UNUSED for n in (25, 26, 27)},
    f"{_LOG}_write_group__mutmut_42": "an empty insert commits an empty transaction: same result",
    f"{_LOG}close__mutmut_4": "the writer stops at anything that is not an entry",
    **{f"{_LOG}read__mutmut_{n}": "this SQLite is built with URI filenames on" for n in (4, 6, 7)},
    f"{_LOG}read__mutmut_37": "re-opening the segment for every record only costs time",
    **{
        f"{_LOG}{name}": (
            "every write is bracketed by an explicit BEGIN IMMEDIATE / COMMIT, and a PASSIVE"
            " checkpoint never waits for a lock"
        )
        for name in ("__init____mutmut_94", "__init____mutmut_95", "_open__mutmut_7")
    },
    **{
        f"{_HOLDINGS}EdgeStateǁadd__mutmut_{n}": (
            "the next run's first number joins that run whenever it is stored, never the"
            " numbers held apart, so a run cannot grow past the next run's floor anyway"
        )
        for n in (23, 24, 29, 35)
    },
    f"{_HOLDINGS}EdgeStateǁadd__mutmut_43": (
        "add() gets only what fresh() let through: the run's high is held, never added again"
    ),
    f"{_HOLDINGS}Holdingsǁappended__mutmut_1": "an equal number writes the value already there",
    f"{_HOLDINGS}EdgeStateǁhigh_water__mutmut_14": (
        "index is -1 only for a floor below 0, and no epoch has a negative base: callers"
        " ask from 0 or from an epoch's base"
    ),
    f"{_HOLDINGS}Holdingsǁopen_epoch__mutmut_21": (
        "the default 0 of the queued number already keeps the base at 0 or above"
    ),
    "edgeswarm.gateway.log.holdings.x_load_edges__mutmut_53": (
        "the column alias is renamed where it is defined and where it is read alike"
    ),
    "edgeswarm.gateway.log.holdings.x_load_edges__mutmut_79": (
        "seq 1, when stored, is always in the run of epoch 0: never outside every run"
    ),
    "edgeswarm.wire.codec.x__encode_fields__mutmut_279": (
        "unreachable: every frame type has its case (pragma: no cover)"
    ),
}
"""Survivors looked at and found equivalent (no test can tell them from the original),
by mutant name, with the reason; docs/testing.md explains each class. Names hold while
their function is unchanged; ``--report`` says which listed names no longer exist.
Issue 11 moved these functions into smaller modules (gateway/log/, wire/framing,
wire/arrays, wire/unpack, edge/policy/): the names were carried over to the new
modules (survivors of functions that issue 11 split up or renamed, e.g. _wire_array,
_report, _open_error, _load_aggregates, were dropped: their successors' survivors are
to be classified anew); a changed function renumbers its mutants, so re-check them
on the next run."""

_DURABLE = (
    "whether an fsync runs (or how the checkpointer's connection syncs): only a power cut"
    " tells, and no test here cuts the power"
)
UNTESTED: dict[str, str] = {
    **{f"{_LOG}__init____mutmut_{n}": _DURABLE for n in (48, 52, 68, 73, 79)},
    f"{_LOG}__init____mutmut_2": (
        "the default busy timeout (5 s): a test would wait 5 s on a lock; every test gives"
        " its own and checks that it is the one in force"
    ),
    **{
        f"{_LOG}__init____mutmut_{n}": (
            "an SQLite corruption error after the open's quick_check passed: only damage"
            " that appears in between, or a file past the 256 MiB check limit"
        )
        for n in (99, 101)
    },
    **{
        f"{_LOG}__init____mutmut_{n}": (
            "an OSError while the segments are recovered: no test makes one (the segment"
            " files opened a moment before)"
        )
        for n in (107, 108, 109, 110)
    },
    "edgeswarm.gateway.log.index.x_open_index__mutmut_5": _DURABLE,
    "edgeswarm.gateway.log.recovery.x_recover_segments__mutmut_57": _DURABLE,
    "edgeswarm.storage.sqlite.x_open_database__mutmut_32": (
        "WAL refused on a database file: this machine's files always take it (the refusal"
        " is tested on enable_wal with an in-memory database)"
    ),
    "edgeswarm.storage.sqlite.x__quick_check__mutmut_26": (
        "quick_check quoting bytes that are not UTF-8: none of 400 seeded damages made it"
    ),
}
"""Survivors looked at that are not equivalent but have no test, with why. They still
count as survivors in the killed share; ``survivors.diff`` marks them looked at."""

_SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|BEGIN|COMMIT|ROLLBACK|CREATE|ALTER|DROP"
    r"|FROM|WHERE|AND|GROUP BY|ORDER BY|IS NOT NULL|IS)\b"
)
"""SQL as this code base writes it: keywords in capitals (English messages have none)."""

KILLED = {1, 3, 36, 24, -24, 152, 255, 37}
"""mutmut exit codes of a mutant some test caught (failed, errored or timed out)."""
SURVIVED = {0}
NOT_CHECKED = {None, 2}
NO_TESTS = {5, 33}


@dataclass
class ModuleReport:
    module: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    not_checked: int = 0
    no_tests: int = 0
    other: int = 0
    seconds: float = 0.0
    timed_out: bool = False
    survivors: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    """Mutants that no selected test reached: they count as survivors."""
    equivalent: dict[str, str] = field(default_factory=dict)
    """Survivors that are equivalent mutants, with the reason."""
    untested_known: dict[str, str] = field(default_factory=dict)
    """Survivors looked at that have no test (:data:`UNTESTED`), with why."""

    @property
    def killed_share(self) -> float | None:
        """Killed among the mutants that are not equivalent, percent (one that no test
        reaches counts as a survivor)."""
        tried = self.killed + self.survived + self.no_tests - len(self.equivalent)
        return round(100.0 * self.killed / tried, 1) if tried else None

    @property
    def raw_killed_share(self) -> float | None:
        """Killed among all mutants tried (equivalent ones included), percent."""
        tried = self.killed + self.survived + self.no_tests
        return round(100.0 * self.killed / tried, 1) if tried else None

    @property
    def to_look_at(self) -> list[str]:
        """Survivors neither equivalent nor looked at: each asks for a test (or a reason)."""
        return [
            name
            for name in self.survivors
            if name not in self.equivalent and name not in self.untested_known
        ]


def source_of(module: str) -> str:
    """The file of ``module``, relative to the repository."""
    return "edgeswarm/" + module.replace(".", "/") + ".py"


def missing_files(modules: list[str]) -> list[str]:
    """Target modules or test files that do not exist: mutmut would mutate nothing (or run
    no test) and report no figure instead of an error."""
    paths = [source_of(m) for m in modules] + [t for m in modules for t in MODULES[m]]
    return [p for p in dict.fromkeys(paths) if not (ROOT / p).is_file()]


def _pyproject(module: str) -> str:
    """The repository's pyproject.toml (pytest settings) plus this module's mutmut table."""
    base = (ROOT / "pyproject.toml").read_text()
    path = source_of(module)
    tests = ", ".join(json.dumps(t) for t in MODULES[module])
    return (
        base
        + f"""
[tool.mutmut]
source_paths = ["edgeswarm"]
only_mutate = [{json.dumps(path)}]
pytest_add_cli_args_test_selection = [{tests}]
# a mutant that makes a test hang uses no CPU (mutmut's limit is CPU time): fail it
# after 30 s (the slowest of these tests takes ~2 s)
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "--timeout=30"]
# stats, clean run and mutants each in a child: two pytest sessions in one process
# crash in wasmtime (segfault), and the gateway tests leave threads behind
process_isolation = "forkserver"
"""
    )


def prepare(module: str) -> Path:
    """Refresh the scratch directory of ``module`` (sources, tests, config); keep results."""
    work = SCRATCH / module
    work.mkdir(parents=True, exist_ok=True)
    for name in ("edgeswarm", "tests"):
        target = work / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(
            ROOT / name,
            target,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            copy_function=shutil.copy2,  # mtimes: mutmut regenerates only changed files
        )
    (work / "pyproject.toml").write_text(_pyproject(module))
    # mutmut copies these into mutants/ once and keeps which test reaches which function:
    # drop them, so that edited tests reach the run and are counted
    for stale in ("tests", "pyproject.toml", "mutmut-stats.json"):
        old = work / "mutants" / stale
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    return work


def run_mutmut(
    module: str, work: Path, deadline: float, jobs: int, names: list[str] | None = None
) -> bool:
    """``mutmut run [names]`` in ``work``; interrupted (SIGINT: results so far are kept)
    at ``deadline`` (monotonic). Returns whether the deadline stopped it."""
    mutmut = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    what = f"{len(names)} earlier survivors again" if names else "new and unchecked mutants"
    left = max(1.0, deadline - time.monotonic())
    print(f"mutate: {module}: {what}, {left / 60:.0f} min left ({work})", flush=True)
    command = [str(mutmut), "run", "--max-children", str(jobs), *(names or [])]
    with subprocess.Popen(command, cwd=work, env=env) as process:
        try:
            process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            print(f"mutate: {module}: time is up, stopping mutmut", flush=True)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return True
    return False


def mutate(module: str, minutes: float, jobs: int) -> tuple[float, bool]:
    """Run the module's new mutants, then re-check its earlier survivors against the
    current tests (mutmut keeps a verdict until the function changes)."""
    started = time.monotonic()
    deadline = started + minutes * 60
    work = SCRATCH / module
    before = collect(module, work) if work.exists() else ModuleReport(module)
    earlier = [*before.survivors, *before.untested]  # the tests may reach them now
    work = prepare(module)
    stopped = run_mutmut(module, work, deadline, jobs)
    now = collect(module, work)
    still = {*now.survivors, *now.untested}
    again = [name for name in earlier if name in still]
    if again and not stopped:
        stopped = run_mutmut(module, work, deadline, jobs, again)
    return time.monotonic() - started, stopped


def collect(module: str, work: Path) -> ModuleReport:
    """Count the outcomes in the module's mutmut meta file."""
    report = ModuleReport(module)
    meta = work / "mutants" / "edgeswarm" / (module.replace(".", "/") + ".py.meta")
    if not meta.exists():
        return report
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    for name, code in sorted(codes.items()):
        report.mutants += 1
        if code in KILLED:
            report.killed += 1
        elif code in SURVIVED:
            report.survived += 1
            report.survivors.append(name)
        elif code in NOT_CHECKED:
            report.not_checked += 1
        elif code in NO_TESTS:
            report.no_tests += 1
            report.untested.append(name)
        else:
            report.other += 1
    return report


def sql_case_only(diff: str) -> bool:
    """Whether a mutant only changed the letter case of an SQL statement (SQL keywords
    and SQLite's identifiers and pragma values are case-insensitive)."""
    removed = [
        line[1:]
        for line in diff.splitlines()
        if line.startswith("-") and not line.startswith("---")
    ]
    added = [
        line[1:]
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    return (
        len(removed) == len(added) == 1
        and removed[0] != added[0]
        and removed[0].lower() == added[0].lower()
        and _SQL.search(removed[0]) is not None
    )


_ZIP_STRICT = re.compile(r",\s*(strict\s*=\s*(True|False|None)\s*)?\)")


def zip_strict_only(diff: str) -> bool:
    """Whether a mutant only changed or dropped ``strict=True`` of a ``zip``: in the
    modules mutated here every such zip pairs lists built from one another (equal
    lengths by construction), so strict=True only asserts what always holds."""
    lines = diff.splitlines()
    removed = [x[1:] for x in lines if x.startswith("-") and not x.startswith("---")]
    added = [x[1:] for x in lines if x.startswith("+") and not x.startswith("+++")]
    if len(removed) != 1 or len(added) != 1 or "zip(" not in removed[0]:
        return False
    return _ZIP_STRICT.sub(")", removed[0]) == _ZIP_STRICT.sub(")", added[0])


def classify(report: ModuleReport, work: Path) -> None:
    """Write every survivor's diff (as ``mutmut show`` prints it) to survivors.diff and
    mark the equivalent ones: listed in EQUIVALENT, or an SQL statement's case changed."""
    mutmut = Path(sys.executable).with_name("mutmut")
    out = work / "survivors.diff"
    with out.open("w") as handle:
        for name in report.survivors:
            shown = subprocess.run(
                [str(mutmut), "show", name], cwd=work, capture_output=True, text=True, timeout=120
            ).stdout
            reason = EQUIVALENT.get(name)
            if reason is None and sql_case_only(shown):
                reason = "SQL is case-insensitive"
            if reason is None and zip_strict_only(shown):
                reason = "zip(strict=True) over lists of equal length by construction"
            if reason is not None:
                report.equivalent[name] = reason
            elif name in UNTESTED:
                report.untested_known[name] = UNTESTED[name]
            label = reason or (f"no test: {UNTESTED[name]}" if name in UNTESTED else "LOOK AT IT")
            handle.write(f"{shown.rstrip()}\n# classification: {label}\n\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/mutate",
        description=__doc__.split("\n\n")[0],
        epilog="Modules: " + ", ".join(MODULES) + ".\n\n"
        "Examples:\n  scripts/mutate                       every module, 30 min each at most\n"
        "  scripts/mutate wire.codec --minutes 60\n"
        "  scripts/mutate --report               the figures of the last runs, no run\n\n"
        "Exit codes: 0 every module reached --goal; 1 a module below it (or not "
        "finished); 2 usage.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="default: all")
    parser.add_argument("--minutes", type=float, default=30.0, help="bound per module")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--goal", type=float, default=85.0, help="killed share, percent")
    parser.add_argument("--report", action="store_true", help="only report the last results")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    options = parser.parse_args()
    unknown = [m for m in options.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; one of {', '.join(MODULES)}")
    modules = options.modules or list(MODULES)
    missing = missing_files(modules)
    if missing:
        parser.error(f"no such file: {', '.join(missing)} (scripts/mutation.py MODULES is stale)")
    reports: list[ModuleReport] = []
    for module in modules:
        work = SCRATCH / module
        seconds, stopped = 0.0, False
        if not options.report:
            seconds, stopped = mutate(module, options.minutes, options.jobs)
        report = collect(module, work)
        report.seconds, report.timed_out = round(seconds, 1), stopped
        if report.survivors:
            classify(report, work)
        reports.append(report)
    previous = {}
    report_file = SCRATCH / "report.json"
    if report_file.exists():
        previous = {r["module"]: r for r in json.loads(report_file.read_text())["modules"]}

    def as_json(r: ModuleReport) -> dict[str, object]:
        return asdict(r) | {
            "killed_share": r.killed_share,
            "raw_killed_share": r.raw_killed_share,
            "to_look_at": r.to_look_at,
        }

    for report in reports:
        previous[report.module] = as_json(report)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps({"modules": list(previous.values())}, indent=2))
    if options.json:
        print(json.dumps([as_json(r) for r in reports]))
    else:
        print(f"\n{'module':<26}{'mutants':>8}{'killed':>8}{'survived':>9}{'equiv.':>7}"
              f"{'unchecked':>10}{'no tests':>9}{'killed %':>9}{'raw %':>7}")  # fmt: skip
        for r in reports:
            share = f"{r.killed_share:.1f}" if r.killed_share is not None else "-"
            raw = f"{r.raw_killed_share:.1f}" if r.raw_killed_share is not None else "-"
            print(f"{r.module:<26}{r.mutants:>8}{r.killed:>8}{r.survived:>9}"
                  f"{len(r.equivalent):>7}{r.not_checked:>10}{r.no_tests:>9}{share:>9}"
                  f"{raw:>7}")  # fmt: skip
        print(
            "\nkilled % = killed / (killed + survived + no tests - equivalent); raw % counts"
            f" the equivalent ones as survivors.\nsurvivors' diffs, classified: "
            f"{SCRATCH}/MODULE/survivors.diff; report: {report_file}"
        )
        stale = sorted(
            (set(EQUIVALENT) | set(UNTESTED)) - {n for r in reports for n in r.survivors}
        )
        if options.report and stale and len(reports) == len(MODULES):
            print(f"EQUIVALENT or UNTESTED names that are no survivors now: {', '.join(stale)}")
    short = [
        r for r in reports
        if r.killed_share is None or r.killed_share < options.goal or r.not_checked
    ]  # fmt: skip
    for r in short:
        print(
            f"mutate: {r.module}: killed {r.killed_share}% (goal {options.goal:g}%), "
            f"{r.not_checked} not checked; see {SCRATCH / r.module}/survivors.diff"
            if r.killed_share is not None
            else f"mutate: {r.module}: no mutant tried yet; run scripts/mutate {r.module}",
            file=sys.stderr,
        )
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
