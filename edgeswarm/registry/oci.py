"""Modules as Wasm OCI artifacts: push to and pull from any OCI registry, through ORAS.

An artifact is an OCI image manifest whose

- config has media type :data:`CONFIG_MEDIA_TYPE` (``application/vnd.wasm.config.v0+json``,
  the CNCF Wasm OCI artifact layout): ``{"architecture": "wasm", "os": "edgeswarm",
  "layerDigests": ["sha256:..."]}``;
- one layer, media type :data:`LAYER_MEDIA_TYPE` (``application/wasm``), holds the
  module's bytes: its OCI digest **is** the module digest of the manifest;
- annotation :data:`MANIFEST_ANNOTATION` holds the signed edgeswarm manifest
  document (``docs/modules.md``), so a pull verifies the signature and the
  digest with nothing else but the artifact.

A pull refuses an artifact that is not such a module (media types, one Wasm
layer), whose annotation is missing or unsigned or fails its signature, or
whose layer is not the bytes the manifest names: the same errors as a
publish (:mod:`.errors`). Plain HTTP (``insecure``) is for registries on
loopback; anything else should be HTTPS.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import oras.client
import requests

from .admission import check_blob
from .errors import ManifestError, OciError
from .manifest import Manifest, parse_manifest
from .signing import verify_manifest

CONFIG_MEDIA_TYPE: Final = "application/vnd.wasm.config.v0+json"
LAYER_MEDIA_TYPE: Final = "application/wasm"
MANIFEST_ANNOTATION: Final = "dev.edgeswarm.module.manifest"
"""Manifest annotation holding the signed edgeswarm manifest document."""
MAX_PULL_BYTES: Final = 64 << 20
"""Largest layer a pull reads."""

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as an upload or a download moves."""


@dataclass(frozen=True)
class PulledModule:
    """A module read back from an OCI registry, its signature and digest verified."""

    manifest: Manifest
    manifest_bytes: bytes
    blob: bytes


PROBE_TIMEOUT_S: Final = 10.0
"""How long the first request to a registry may take before it is called unreachable."""


def _client(reference: str, insecure: bool) -> oras.client.OrasClient:
    """An ORAS client for the registry of ``reference``, once it answered ``GET /v2/``.

    ORAS retries a failed request five times over about two minutes; a
    registry that does not answer at all is told at once instead.
    """
    host = reference.split("/", 1)[0]
    client = oras.client.OrasClient(hostname=host, insecure=insecure)
    try:
        client.session.get(f"{client.prefix}://{host}/v2/", timeout=PROBE_TIMEOUT_S).close()
    except requests.RequestException as exc:
        raise OciError(
            f"OCI registry {host} does not answer ({type(exc).__name__}); check the address"
            + ("" if insecure else " (plain HTTP needs --insecure)")
        ) from exc
    return client


def _failed(reference: str, exc: Exception) -> OciError:
    return OciError(f"OCI registry {reference}: {str(exc).splitlines()[0] if str(exc) else exc!r}")


def push(
    reference: str,
    manifest: Manifest,
    blob: bytes,
    *,
    insecure: bool = False,
    progress: Progress | None = None,
) -> str:
    """Push ``blob`` with its signed ``manifest`` to ``reference`` (``host:port/repo:tag``);
    the OCI manifest's digest."""
    verify_manifest(manifest)
    check_blob(manifest, blob)
    client = _client(reference, insecure)
    config = {"architecture": "wasm", "os": "edgeswarm", "layerDigests": [manifest.digest]}
    total = len(blob)
    if progress is not None:
        progress(0, total)
    with tempfile.TemporaryDirectory(prefix="es-oci-") as tmp:
        wasm = Path(tmp) / f"{manifest.name}.wasm"
        wasm.write_bytes(blob)
        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps(config, sort_keys=True, separators=(",", ":")))
        try:
            response = client.push(
                target=reference,
                files=[f"{wasm}:{LAYER_MEDIA_TYPE}"],
                manifest_config=f"{config_file}:{CONFIG_MEDIA_TYPE}",
                manifest_annotations={MANIFEST_ANNOTATION: manifest.to_bytes().decode()},
                disable_path_validation=True,
                quiet=True,
            )
        except (requests.RequestException, ValueError, OSError) as exc:
            raise _failed(reference, exc) from exc
    if progress is not None:
        progress(total, total)
    return str(response.headers.get("Docker-Content-Digest", ""))


def _wasm_layer(reference: str, oci_manifest: dict[str, Any]) -> dict[str, Any]:
    config = oci_manifest.get("config") or {}
    if config.get("mediaType") != CONFIG_MEDIA_TYPE:
        raise OciError(
            f"{reference} is not a Wasm artifact (config media type "
            f"{config.get('mediaType')!r}, expected {CONFIG_MEDIA_TYPE})"
        )
    layers = [
        layer
        for layer in oci_manifest.get("layers", [])
        if layer.get("mediaType") == LAYER_MEDIA_TYPE
    ]
    if len(layers) != 1:
        raise OciError(f"{reference} has {len(layers)} {LAYER_MEDIA_TYPE} layers, expected one")
    layer: dict[str, Any] = layers[0]
    if not isinstance(layer.get("size"), int) or not 0 <= layer["size"] <= MAX_PULL_BYTES:
        raise OciError(f"{reference}: the Wasm layer's size is missing or above {MAX_PULL_BYTES}")
    return layer


def pull(
    reference: str, *, insecure: bool = False, progress: Progress | None = None
) -> PulledModule:
    """Pull the module at ``reference``, verify its signature and its digest."""
    client = _client(reference, insecure)
    container = client.get_container(reference)
    try:
        oci_manifest = client.get_manifest(container)
    except (requests.RequestException, ValueError) as exc:
        raise _failed(reference, exc) from exc
    layer = _wasm_layer(reference, oci_manifest)
    document = (oci_manifest.get("annotations") or {}).get(MANIFEST_ANNOTATION)
    if not isinstance(document, str):
        raise ManifestError(f"{reference} carries no {MANIFEST_ANNOTATION} annotation")
    manifest_bytes = document.encode()
    manifest = parse_manifest(manifest_bytes)
    verify_manifest(manifest)
    total = int(layer["size"])
    chunks: list[bytes] = []
    done = 0
    try:
        with client.get_blob(container, layer["digest"], stream=True) as response:
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=64 * 1024):
                done += len(chunk)
                if done > total:
                    raise OciError(f"{reference}: the Wasm layer is longer than it says")
                chunks.append(chunk)
                if progress is not None:
                    progress(done, total)
    except requests.RequestException as exc:
        raise _failed(reference, exc) from exc
    blob = b"".join(chunks)
    check_blob(manifest, blob)
    return PulledModule(manifest, manifest_bytes, blob)
