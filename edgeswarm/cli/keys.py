"""``edgeswarm keys``: peer key pairs, join tokens and the gateway's peer registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgeswarm.gateway.config import GatewayConfig
from edgeswarm.gateway.peers import PEER_ID_MAX_CHARS
from edgeswarm.identity import fingerprint, public_key_from_text, public_key_text
from edgeswarm.identity.keys import load_or_create_key
from edgeswarm.wire import Role

from .exits import ExitCode, Usage, exits_on_error, fail

if TYPE_CHECKING:
    from edgeswarm.gateway.peers import PeerRegistry

keys_app = typer.Typer(
    name="keys",
    help="Key pairs of peers, join tokens, and the keys a gateway admits (peers.db).",
    no_args_is_help=True,
)

GatewayDir = Annotated[
    Path, typer.Option("--data-dir", help="The gateway's data directory (holds peers.db).")
]
DEFAULT_DIR = GatewayConfig().data_dir
Create = Annotated[
    bool,
    typer.Option(
        help="Create peers.db if the directory has none (before the gateway's first start)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _registry(data_dir: Path, *, create: bool | None = None) -> PeerRegistry:
    """The registry of ``data_dir``: never a new empty one by mistake (a mistyped
    --data-dir would issue tokens the real gateway refuses), unless ``create`` (None:
    the command has no --create)."""
    from edgeswarm.gateway.peers import PeerRegistry, PeerRegistryError

    try:
        return PeerRegistry(data_dir / "peers.db", create=bool(create))
    except PeerRegistryError as exc:
        if create or (data_dir / "peers.db").exists():
            raise
        hint = "" if create is None else "; --create makes one"
        raise Usage(f"--data-dir: {exc}{hint}") from None


@keys_app.command("init")
def init(
    key: Annotated[Path, typer.Option(help="Private key file to create (mode 0600).")],
    as_json: AsJson = False,
) -> None:
    """Create an ed25519 key pair (or show the existing one) and print its public key.

    Examples:

        edgeswarm keys init --key /etc/edgeswarm/admin.key
    """
    with exits_on_error():
        pair = load_or_create_key(key)
    record = {
        "key": str(key),
        "public_key": public_key_text(pair.public_key),
        "fingerprint": fingerprint(pair.public_key),
    }
    typer.echo(
        json.dumps(record) if as_json else f"{record['public_key']}  ({record['fingerprint']})"
    )


@keys_app.command("issue")
def issue(
    data_dir: GatewayDir = DEFAULT_DIR,
    role: Annotated[Role, typer.Option(help="Role the token enrolls.")] = Role.EDGE,
    ttl: Annotated[float, typer.Option(min=1, help="Lifetime in seconds.")] = 24 * 3600.0,
    uses: Annotated[int, typer.Option(min=1, help="How many keys it may enroll.")] = 1,
    create: Create = False,
    as_json: AsJson = False,
) -> None:
    """Issue a join token: a new peer presents it once to enroll its key.

    Hand it over out of band; the peer reads it from a file or the environment
    (--join-token-file, EDGESWARM_JOIN_TOKEN), not from its command line.

    Examples:

        edgeswarm keys issue --data-dir /var/lib/edgeswarm --role edge --ttl 600

        edgeswarm keys issue --data-dir /var/lib/edgeswarm --uses 50 --json | jq -r .token
    """
    with exits_on_error(), _registry(data_dir, create=create) as registry:
        token = registry.issue_token(role, ttl_s=ttl, uses=uses)
    record = {"token": token, "role": role.value, "ttl_s": ttl, "uses": uses}
    typer.echo(json.dumps(record) if as_json else token)


@keys_app.command("add")
def add(
    peer_id: Annotated[str, typer.Option(help="Name the key will be known by.")],
    public_key: Annotated[str, typer.Option(help="ed25519:... as printed by `keys init`.")],
    data_dir: GatewayDir = DEFAULT_DIR,
    role: Annotated[Role, typer.Option(help="Role of the peer.")] = Role.EDGE,
    replace: Annotated[
        bool, typer.Option(help="Give PEER_ID this key instead of its current one.")
    ] = False,
    create: Create = False,
    as_json: AsJson = False,
) -> None:
    """Enroll a public key directly (pre-registration, no token).

    One id, one key: a key enrolled under another id is refused (remove that peer
    first). With --replace the peer's old key is revoked: a running gateway closes
    its sessions within a second.

    Examples:

        edgeswarm keys add --data-dir /var/lib/edgeswarm --role admin --peer-id admin \\
            --public-key ed25519:…
    """
    with exits_on_error():
        if not 1 <= len(peer_id) <= PEER_ID_MAX_CHARS:
            raise Usage(f"--peer-id: a peer id has 1 to {PEER_ID_MAX_CHARS} characters")
        try:
            raw = public_key_from_text(public_key)
        except ValueError as exc:
            raise Usage(f"--public-key: {exc}") from None
        with _registry(data_dir, create=create) as registry:
            peer = registry.add_peer(raw, peer_id, role, replace=replace)
    record = {"peer_id": peer.peer_id, "role": peer.role.value, "fingerprint": peer.fingerprint}
    typer.echo(json.dumps(record) if as_json else f"enrolled {peer_id} ({peer.fingerprint})")


@keys_app.command("remove")
def remove(
    peer_id: Annotated[str, typer.Option(help="Peer to forget.")],
    data_dir: GatewayDir = DEFAULT_DIR,
    as_json: AsJson = False,
) -> None:
    """Forget a peer's key: a running gateway closes its open sessions within a second
    (ERROR KEY_REVOKED) and refuses its next connection.

    Exit status 1 when there is no such peer.

    Examples:

        edgeswarm keys remove --data-dir /var/lib/edgeswarm --peer-id edge-7
    """
    with exits_on_error(), _registry(data_dir) as registry:
        removed = registry.remove_peer(peer_id)
    if not removed:
        fail(f"no peer {peer_id!r} in {data_dir / 'peers.db'}", ExitCode.FAILURE)
    typer.echo(json.dumps({"removed": peer_id}) if as_json else f"removed {peer_id}")


@keys_app.command("list")
def list_peers(data_dir: GatewayDir = DEFAULT_DIR, as_json: AsJson = False) -> None:
    """The keys a gateway admits.

    Examples:

        edgeswarm keys list --data-dir /var/lib/edgeswarm

        edgeswarm keys list --data-dir /var/lib/edgeswarm --json | jq -r '.[].peer_id'
    """
    with exits_on_error(), _registry(data_dir) as registry:
        peers = registry.peers()
    rows = [
        {
            "peer_id": p.peer_id,
            "role": p.role.value,
            "public_key": public_key_text(p.public_key),
            "fingerprint": p.fingerprint,
            "via": p.via,
            "added_at": p.added_at,
        }
        for p in peers
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"peers of {data_dir}")
    for column in ("peer", "role", "fingerprint", "via"):
        table.add_column(column)
    for peer in peers:
        table.add_row(peer.peer_id, peer.role.value, peer.fingerprint, peer.via)
    Console().print(table)
