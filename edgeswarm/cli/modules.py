"""``edgeswarm agents build|sign|publish|modules|history|trust|push|pull``: Wasm agent modules.

From C source to a published module::

    edgeswarm agents build src/policy.c --out policy.wasm
    edgeswarm keys init --key publisher.key
    edgeswarm agents trust add --public-key ed25519:... --names 'policy*' --data-dir var/gateway
    edgeswarm agents sign policy.wasm --name policy --version 1.0.0 --key publisher.key
    edgeswarm agents publish policy.wasm --data-dir var/gateway
    edgeswarm agents push policy.wasm registry.example:5000/agents/policy:1.0.0

``publish``, ``modules``, ``history`` and ``trust`` work on the gateway's
``modules.db`` in ``--data-dir`` (beside a running gateway, like ``keys``).
Errors are one line on stderr. Exit status: 0 done; 1 it could not be done (a
damaged modules.db, an OCI registry that does not answer); 2 usage (a file
that is missing or not a manifest, a bad key text); 3 the module was refused
for good (unsigned, signature, trust, digest, size, ABI, version conflict):
retrying cannot help, the publisher or the operator must act. A refused
publish changes nothing.
"""

from __future__ import annotations

import datetime
import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from edgeswarm.identity import KeyPair, public_key_from_text, public_key_text

from .exits import ExitCode, Usage, debug_enabled, exits_on_error, fail
from .module_files import manifest_path, signed_manifest

if TYPE_CHECKING:
    from edgeswarm.registry import ModuleStore
    from edgeswarm.registry.oci import Progress as ProgressCallback

GatewayDir = Annotated[
    Path, typer.Option("--data-dir", help="The gateway's data directory (holds modules.db).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Actor = Annotated[
    str | None,
    typer.Option(help="Who is making the change, for the history (default: the OS user)."),
]
Insecure = Annotated[
    bool, typer.Option("--insecure", help="Plain HTTP to the OCI registry (loopback only).")
]
DEFAULT_DATA_DIR = Path("var/gateway")


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


def _store(data_dir: Path) -> ModuleStore:
    from edgeswarm.registry import ModuleStore

    return ModuleStore(data_dir / "modules.db")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", ExitCode.USAGE)


@contextmanager
def _exits(context: str) -> Iterator[None]:
    """:func:`exits_on_error`, and a refused module is status 3 (REFUSED), a malformed
    manifest status 2 (USAGE)."""
    from edgeswarm.registry import ManifestError, ModuleRefusedError

    with exits_on_error(context):
        try:
            yield
        except ModuleRefusedError as exc:
            if debug_enabled():
                raise
            fail(f"{context}: {exc}", ExitCode.REFUSED)
        except ManifestError as exc:
            raise Usage(str(exc)) from exc


def _emit(record: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(record) if as_json else text)


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[ProgressCallback | None]:
    """A progress bar on stderr for an upload or a download (none with ``--json``)."""
    if quiet:
        yield None
        return
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def build(
    source: Annotated[Path, typer.Argument(help="C (.c) or WAT (.wat) source of the policy.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the module (default: SOURCE.wasm).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Compile a policy (zig cc with the pinned ziglang, or WAT) and check its ABI.

    The module is loaded in the edge's own sandbox: exports, imports,
    es_abi_version() == 1, the descriptor and es_init are checked.

    Examples:

        edgeswarm agents build src/policy.c --out policy.wasm --json
    """
    from edgeswarm.agents_wasm.build import compile_source
    from edgeswarm.registry import blob_digest

    from .module_files import describe

    target = out or source.with_suffix(".wasm")
    with _exits(f"build {source}"):
        blob = compile_source(source)
        descriptor = describe(blob, str(source))
        target.write_bytes(blob)
    record = {
        "module": str(target),
        "digest": blob_digest(blob),
        "size": len(blob),
        "descriptor": descriptor.to_json(),
    }
    _emit(record, as_json, f"built {target} ({len(blob)} bytes, {record['digest']})")


def sign(
    module: Annotated[Path, typer.Argument(help="The .wasm module.")],
    name: Annotated[str, typer.Option(help="Module name in the registry (a-z 0-9 . _ -).")],
    version: Annotated[str, typer.Option(help="Semantic version, e.g. 1.2.0.")],
    key: Annotated[Path, typer.Option(help="Publisher's private key (`edgeswarm keys init`).")],
    out: Annotated[
        Path | None, typer.Option(help="Manifest file (default: MODULE.manifest.json).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Write the signed manifest of a module: name, version, digest, ABI, descriptor.

    Examples:

        edgeswarm agents sign policy.wasm --name policy --version 1.0.0 --key pub.key
    """
    blob = _read(module)
    with _exits(f"sign {module}"):
        pair = KeyPair.load(key)
        manifest = signed_manifest(blob, name=name, version=version, key=pair, label=str(module))
        target = out or manifest_path(module)
        target.write_bytes(manifest.to_bytes())
    record = {"manifest": str(target), **manifest.document()}
    _emit(record, as_json, f"signed {manifest.ref} ({manifest.digest}) -> {target}")


def publish(
    module: Annotated[Path, typer.Argument(help="The .wasm module.")],
    manifest: Annotated[
        Path | None, typer.Option(help="Its signed manifest (default: MODULE.manifest.json).")
    ] = None,
    data_dir: GatewayDir = DEFAULT_DATA_DIR,
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Publish a signed module into a gateway's registry.

    Refused, with nothing changed, when the manifest is unsigned or its
    signature fails, the publisher is not trusted for the name, the module is
    not the one the manifest names, or it is not ABI v1 (checked on a compile
    bounded as an edge's: a child process under the edge's default compile
    limits).

    Examples:

        edgeswarm agents publish policy.wasm --data-dir var/gateway --json
    """
    blob = _read(module)
    document = _read(manifest or manifest_path(module))
    from .module_files import compile_bounded

    with _exits(f"publish {module}"), _store(data_dir) as store:
        published = store.publish(
            document, blob, actor=_actor(actor), compile_module=compile_bounded
        )
    record = published.summary()
    _emit(record, as_json, f"published {published.manifest.ref} ({record['digest']})")


def modules(
    name: Annotated[str | None, typer.Argument(help="Only this module.")] = None,
    data_dir: GatewayDir = DEFAULT_DATA_DIR,
    as_json: AsJson = False,
) -> None:
    """The modules a gateway's registry holds, every version.

    Examples:

        edgeswarm agents modules --data-dir var/gateway --json
    """
    with exits_on_error(), _store(data_dir) as store:
        found = store.versions(name) if name else store.modules()
    rows = [module.summary() for module in found]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"modules in {data_dir}")
    for column in ("name", "version", "digest", "state", "publisher", "published by"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["version"],
            row["digest"][:19],
            str(row["state_dim"]),
            row["publisher_fingerprint"],
            row["published_by"],
        )
    Console().print(table)


def history(
    name: Annotated[str | None, typer.Argument(help="Only this module.")] = None,
    data_dir: GatewayDir = DEFAULT_DATA_DIR,
    limit: Annotated[int, typer.Option(min=1, help="Most recent entries shown.")] = 100,
    as_json: AsJson = False,
) -> None:
    """Every change to a gateway's registry, oldest first, with who made it.

    Examples:

        edgeswarm agents history policy --data-dir var/gateway --json
    """
    with exits_on_error(), _store(data_dir) as store:
        entries = store.history(name, limit=limit)
    if as_json:
        typer.echo(json.dumps([entry.to_json() for entry in entries]))
        return
    table = Table(title=f"history of {name or 'every module'}")
    for column in ("#", "when (UTC)", "who", "action", "module", "version", "detail"):
        table.add_column(column)
    for entry in entries:
        when = datetime.datetime.fromtimestamp(entry.at, datetime.UTC)
        table.add_row(
            str(entry.seq),
            when.strftime("%Y-%m-%d %H:%M:%S"),
            entry.actor,
            entry.action,
            entry.name,
            entry.version,
            json.dumps(entry.detail, sort_keys=True),
        )
    Console().print(table)


trust_app = typer.Typer(
    name="trust", help="Which publisher keys may publish which module names.", no_args_is_help=True
)


def _public_key(text: str) -> bytes:
    try:
        return public_key_from_text(text)
    except ValueError as exc:
        fail(f"--public-key: {exc}", ExitCode.USAGE)


@trust_app.command("add")
def trust_add(
    public_key: Annotated[str, typer.Option(help="ed25519:... as `keys init` prints it.")],
    names: Annotated[str, typer.Option(help="Module names it may publish (glob: 'team-a.*').")],
    data_dir: GatewayDir = DEFAULT_DATA_DIR,
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Let a publisher key publish module names matching a pattern.

    Examples:

        edgeswarm agents trust add --public-key ed25519:... --names 'policy*'
    """
    raw = _public_key(public_key)
    with exits_on_error(), _store(data_dir) as store:
        store.trust(raw, names, actor=_actor(actor))
    record = {"publisher": public_key_text(raw), "pattern": names}
    _emit(record, as_json, f"trusted {public_key_text(raw)} for {names!r}")


@trust_app.command("remove")
def trust_remove(
    public_key: Annotated[str, typer.Option(help="ed25519:... of the publisher.")],
    names: Annotated[str, typer.Option(help="The pattern given to `trust add`.")],
    data_dir: GatewayDir = DEFAULT_DATA_DIR,
    actor: Actor = None,
) -> None:
    """Remove one trust rule (published modules stay). Exit 1 when there was none.

    Examples:

        edgeswarm agents trust remove --public-key ed25519:... --names 'policy*'
    """
    raw = _public_key(public_key)
    with exits_on_error(), _store(data_dir) as store:
        removed = store.distrust(raw, names, actor=_actor(actor))
    if not removed:
        fail(f"no rule for {public_key_text(raw)} and {names!r}", code=1)
    typer.echo(f"removed the rule for {names!r}")


@trust_app.command("list")
def trust_list(data_dir: GatewayDir = DEFAULT_DATA_DIR, as_json: AsJson = False) -> None:
    """The trust rules of a gateway's registry.

    Examples:

        edgeswarm agents trust list --data-dir var/gateway --json
    """
    with exits_on_error(), _store(data_dir) as store:
        rules = store.trust_rules()
    if as_json:
        typer.echo(json.dumps(rules))
        return
    table = Table(title=f"trust rules in {data_dir}")
    for column in ("publisher", "fingerprint", "names", "added by"):
        table.add_column(column)
    for rule in rules:
        table.add_row(rule["publisher"], rule["fingerprint"], rule["pattern"], rule["added_by"])
    Console().print(table)


def push(
    module: Annotated[Path, typer.Argument(help="The .wasm module.")],
    reference: Annotated[str, typer.Argument(help="host:port/repository:tag")],
    manifest: Annotated[
        Path | None, typer.Option(help="Its signed manifest (default: MODULE.manifest.json).")
    ] = None,
    insecure: Insecure = False,
    as_json: AsJson = False,
) -> None:
    """Push a signed module to an OCI registry as a Wasm artifact (ORAS).

    Examples:

        edgeswarm agents push policy.wasm 127.0.0.1:5000/agents/policy:1.0.0 --insecure
    """
    from edgeswarm.registry import check_blob, oci, parse_manifest, verify_manifest

    blob = _read(module)
    document = _read(manifest or manifest_path(module))
    with _exits(f"push {reference}"):
        signed = parse_manifest(document)
        verify_manifest(signed)
        check_blob(signed, blob)
        with _progress(f"push {signed.ref}", as_json) as progress:
            oci_digest = oci.push(reference, signed, blob, insecure=insecure, progress=progress)
    record = {"reference": reference, "digest": signed.digest, "oci_manifest": oci_digest}
    _emit(record, as_json, f"pushed {signed.ref} ({signed.digest}) to {reference}")


def pull(
    reference: Annotated[str, typer.Argument(help="host:port/repository:tag")],
    out: Annotated[
        Path, typer.Option(help="Directory for NAME-VERSION.wasm and its manifest.")
    ] = Path(),
    insecure: Insecure = False,
    as_json: AsJson = False,
) -> None:
    """Pull a module from an OCI registry and verify its signature and digest.

    Writes NAME-VERSION.wasm and NAME-VERSION.manifest.json; publish them with
    `agents publish` (the gateway's trust policy decides).

    Examples:

        edgeswarm agents pull 127.0.0.1:5000/agents/policy:1.0.0 --insecure --out .
    """
    from edgeswarm.identity import fingerprint
    from edgeswarm.registry import oci

    with _exits(f"pull {reference}"):
        with _progress(f"pull {reference}", as_json) as progress:
            pulled = oci.pull(reference, insecure=insecure, progress=progress)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{pulled.manifest.name}-{pulled.manifest.version}"
        wasm = out / f"{stem}.wasm"
        wasm.write_bytes(pulled.blob)
        (out / f"{stem}.manifest.json").write_bytes(pulled.manifest_bytes)
    record = {
        "module": str(wasm),
        "manifest": str(out / f"{stem}.manifest.json"),
        "digest": pulled.manifest.digest,
        "publisher": public_key_text(pulled.manifest.publisher),
        "publisher_fingerprint": fingerprint(pulled.manifest.publisher),
        "signature": "verified",
    }
    _emit(
        record,
        as_json,
        f"pulled {pulled.manifest.ref} ({pulled.manifest.digest}), signed by "
        f"{record['publisher_fingerprint']} -> {wasm}",
    )


def register_module_commands(agents: typer.Typer) -> None:
    """Add the module commands to the ``agents`` group."""
    for command in (build, sign, publish, modules, history, push, pull):
        agents.command()(command)
    agents.add_typer(trust_app)
