"""Named contexts: where a gateway is and how to talk to it, kept in the user's config file.

Like kubectl's contexts: an operator saves a gateway address, its CA and an
admin key once under a name, then ``edgeswarm status`` (and ``state``) use the
current context, or the one ``--context NAME`` / ``$EDGESWARM_CONTEXT`` names.
Options given on the command line (or by their environment variables) win over
the context; the built-in defaults fill what neither gives.

The file is JSON, ``$EDGESWARM_CONFIG`` or ``config.json`` in the user's
config directory (``~/.config/edgeswarm`` on Linux), written through a
temporary file and a rename, mode 0600::

    {"current_context": "prod",
     "contexts": {"prod": {"gateway": "gw.example:PORT", "ca": "/etc/edgeswarm/ca.crt",
                           "key": "/home/ops/.config/edgeswarm/admin.key",
                           "admin_id": "admin", "server_name": null}}}

Paths are stored absolute, so a context works from any directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from .exits import Usage

__all__ = ["CONFIG_ENV", "CONTEXT_ENV", "Config", "Context", "config_path", "load_config"]

CONFIG_ENV = "EDGESWARM_CONFIG"
"""Environment variable naming the config file instead of the default one."""
CONTEXT_ENV = "EDGESWARM_CONTEXT"
"""Environment variable naming the context to use (as ``--context``)."""


@dataclass(frozen=True)
class Context:
    """One gateway, as an operator reaches it."""

    gateway: str
    """``host:port`` of the gateway."""
    ca: str | None = None
    """Absolute path of the CA certificate the gateway's certificate chains to."""
    key: str | None = None
    """Absolute path of the admin private key."""
    admin_id: str | None = None
    """Peer id the admin key is enrolled as."""
    server_name: str | None = None
    """Name in the gateway's certificate, when it is not the host."""


@dataclass
class Config:
    """The config file: contexts by name, and the current one."""

    path: Path
    contexts: dict[str, Context] = field(default_factory=dict)
    current: str | None = None

    def get(self, name: str | None) -> tuple[str, Context] | None:
        """The context ``name`` (the current one when None); None when there is none.

        Raises :class:`Usage` for a name that does not exist.
        """
        chosen = name or self.current
        if chosen is None:
            return None
        context = self.contexts.get(chosen)
        if context is None:
            known = ", ".join(sorted(self.contexts)) or "none"
            where = "" if name else f" (the current context of {self.path})"
            raise Usage(
                f"no context {chosen!r}{where}; contexts: {known}"
                " (`edgeswarm context add NAME --gateway HOST:PORT --ca CA --key KEY`)"
            )
        return chosen, context

    def save(self) -> None:
        """Write the file atomically, mode 0600 (it names keys)."""
        document = {
            "current_context": self.current,
            "contexts": {
                name: dataclasses.asdict(context) for name, context in sorted(self.contexts.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".config-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(document, out, indent=2)
                out.write("\n")
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise


def config_path() -> Path:
    """``$EDGESWARM_CONFIG``, else ``config.json`` in the user's config directory."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    return Path(typer.get_app_dir("edgeswarm")) / "config.json"


def load_config(path: Path | None = None) -> Config:
    """The config file (empty when it does not exist); :class:`Usage` naming the file when
    it cannot be read or is not a config file."""
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config(path)
    except OSError as exc:
        raise Usage(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
        contexts = {
            str(name): _context(entry) for name, entry in document.get("contexts", {}).items()
        }
        current = document.get("current_context")
        if current is not None and not isinstance(current, str):
            raise ValueError("current_context is not a name")
    except (ValueError, AttributeError, TypeError) as exc:
        raise Usage(f"config file {path} is damaged ({exc}): fix it or move it aside") from None
    return Config(path, contexts, current)


def _context(entry: Any) -> Context:
    if not isinstance(entry, dict) or not isinstance(entry.get("gateway"), str):
        raise ValueError("a context is a map with a gateway")
    names = {f.name for f in dataclasses.fields(Context)}
    values = {k: v for k, v in entry.items() if k in names}
    if any(v is not None and not isinstance(v, str) for v in values.values()):
        raise ValueError("context values are strings")
    return Context(**values)
