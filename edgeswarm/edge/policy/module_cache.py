"""The process's wasmtime engines and their compiled modules, in memory and on disk.

One :class:`wasmtime.Engine` per :class:`~edgeswarm.edge.policy.engine.EngineSettings`
and process (:func:`shared_engine`), configured by
:func:`~edgeswarm.edge.policy.engine.engine_config` (fuel, epoch deadline,
NaN canonicalisation, exactly the ABI's features). A :class:`ModuleCache`
compiles each distinct module (by SHA-256 of its bytes) once for its engine
and keeps it in memory. With a ``cache_dir`` it also keeps the compiled
artifact on disk, so a fresh process loads a module without compiling it.

Compiling never happens in this process: :mod:`~edgeswarm.edge.policy.compiler`
checks the module's size and function count against the cache's
:class:`~edgeswarm.edge.policy.compiler.CompileLimits` and compiles it in a
memory- and time-limited child, which returns the serialized artifact; the
cache deserializes it here (and writes it to disk). A module refused for any
reason is remembered by digest (in memory), so retrying it costs nothing.

On-disk entries are named ``<sha256 of the module>-<fingerprint>.cwasm``; the
fingerprint hashes the wasmtime version, the engine configuration and the
machine, so another engine never reads them. An entry is::

    magic (8 bytes) | sha256 of the module (32) | sha256 of the artifact (32) | artifact

and the header and digest are checked *before* the artifact is handed to
``wasmtime.Module.deserialize``. A corrupt, truncated or mismatched entry is
logged, deleted and rebuilt from the module bytes; it is never executed.
Entries are written to a temporary file and renamed into place.

Security: ``Module.deserialize`` runs native code produced by the compiler
and trusts it. The digest catches corruption, not an attacker who can write
the directory (they can write a matching digest too). The directory must be
private to the edge's user: it is created with mode 0700, and one that is
not owned by this user or is group/world-writable is refused (the on-disk
cache is then off, with a warning).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import platform
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final

import wasmtime

from edgeswarm.edge.policy.compiler import (
    CompileLimits,
    check_size,
    check_structure,
    compile_in_worker,
)
from edgeswarm.edge.policy.engine import EngineSettings, engine_config
from edgeswarm.edge.policy.errors import PolicyCompileError, PolicyLoadError

logger = logging.getLogger("edgeswarm.edge")

CACHE_MAGIC: Final = b"ESWCM\x01\x00\x00"
"""First bytes of an on-disk entry (format version 1)."""

_HEADER_LEN: Final = len(CACHE_MAGIC) + 32 + 32
_REFUSALS_KEPT: Final = 256
"""Refused module digests remembered per cache."""

_engines: dict[EngineSettings, wasmtime.Engine] = {}
_engine_lock = threading.Lock()


def new_engine(settings: EngineSettings | None = None) -> wasmtime.Engine:
    """An engine configured for policies (prefer :func:`shared_engine`)."""
    return wasmtime.Engine(engine_config(settings if settings is not None else EngineSettings()))


def shared_engine(settings: EngineSettings | None = None) -> wasmtime.Engine:
    """The process-wide engine for ``settings`` (default settings; created on first use)."""
    settings = settings if settings is not None else EngineSettings()
    with _engine_lock:
        engine = _engines.get(settings)
        if engine is None:
            engine = _engines[settings] = new_engine(settings)
        return engine


@functools.cache
def engine_fingerprint(settings: EngineSettings | None = None) -> str:
    """Hex digest naming the engine configuration an on-disk artifact is valid for."""
    settings = settings if settings is not None else EngineSettings()
    text = (
        f"wasmtime={importlib.metadata.version('wasmtime')};{settings.describe()};"
        f"machine={platform.machine()};system={platform.system()}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_wasm(data: bytes, name: str = "") -> bytes:
    """The Wasm binary for ``data`` (a binary, or WAT text)."""
    if data.startswith(b"\0asm"):
        return data
    try:
        return bytes(wasmtime.wat2wasm(data.decode("utf-8")))
    except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
        raise PolicyLoadError(f"not a Wasm binary or WAT text: {exc}", policy=name) from exc


@dataclass(frozen=True)
class CompiledModule:
    """A module compiled for a cache's engine."""

    module: wasmtime.Module
    digest: str
    """SHA-256 (hex) of the Wasm binary."""
    engine: wasmtime.Engine
    settings: EngineSettings = field(default_factory=EngineSettings)
    """How ``engine`` is configured (whether calls can be stopped at a deadline)."""


@dataclass(frozen=True)
class CacheStats:
    """What a :class:`ModuleCache` has done since it was made."""

    compiled: int
    """Modules compiled from bytes."""
    memory_hits: int
    """Loads answered from memory."""
    disk_hits: int
    """Loads answered by deserializing a verified on-disk entry."""
    disk_rejected: int
    """On-disk entries found corrupt or mismatched (deleted, rebuilt)."""


class ModuleCache:
    """Compiled modules by content digest, for the shared engine of ``settings``.

    ``cache_dir``: where compiled artifacts are kept across processes;
    ``None`` (the default) keeps them in memory only. The edge keeps them in
    ``<data dir>/modules`` unless told otherwise (``--module-cache-dir``).
    ``limits`` bound the modules it accepts and their compilation.
    """

    _shared: ClassVar[ModuleCache | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        settings: EngineSettings | None = None,
        limits: CompileLimits | None = None,
    ) -> None:
        self.settings = settings if settings is not None else EngineSettings()
        self.engine = shared_engine(self.settings)
        self.limits = limits if limits is not None else CompileLimits()
        self.cache_dir = _private_dir(Path(cache_dir)) if cache_dir is not None else None
        """Where artifacts are kept on disk (None: memory only)."""
        self._fingerprint = engine_fingerprint(self.settings)
        self._modules: dict[str, CompiledModule] = {}
        self._refused: dict[str, PolicyLoadError] = {}
        self._lock = threading.Lock()
        self._compiled = self._memory_hits = self._disk_hits = self._disk_rejected = 0

    @classmethod
    def shared(cls) -> ModuleCache:
        """The process-wide in-memory cache (shared engine; created on first use)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def __len__(self) -> int:
        return len(self._modules)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self._compiled, self._memory_hits, self._disk_hits, self._disk_rejected)

    def entry_path(self, digest: str) -> Path | None:
        """The on-disk entry for a module digest (None without a cache dir)."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{digest}-{self._fingerprint}.cwasm"

    def load(self, data: bytes, *, name: str = "") -> CompiledModule:
        """The compiled module for ``data`` (Wasm binary or WAT text), compiled at most once.

        Raises :class:`PolicyLoadError` (a :class:`PolicyCompileError` for the
        compile limits, the feature set and invalid modules).
        """
        check_size(len(data), self.limits, name)
        wasm = to_wasm(data, name)
        check_size(len(wasm), self.limits, name)
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            compiled = self._modules.get(digest)
            if compiled is not None:
                self._memory_hits += 1
                return compiled
            refused = self._refused.get(digest)
            if refused is not None:
                raise PolicyCompileError(refused.detail, policy=name)
            try:
                check_structure(wasm, self.limits, name)
                module = self._from_disk(digest, name)
                if module is None:
                    artifact = compile_in_worker(wasm, self.settings, self.limits, name)
                    module = self._deserialize(artifact, name)
                    self._compiled += 1
                    self._to_disk(digest, artifact)
            except PolicyLoadError as exc:
                if len(self._refused) < _REFUSALS_KEPT:
                    self._refused[digest] = exc
                raise
            compiled = CompiledModule(module, digest, self.engine, self.settings)
            self._modules[digest] = compiled
            return compiled

    def load_path(self, path: str | os.PathLike[str], *, name: str = "") -> CompiledModule:
        """:meth:`load` of a file, refused by its size before it is read."""
        path = Path(path)
        try:
            check_size(path.stat().st_size, self.limits, name)
            data = path.read_bytes()
        except OSError as exc:
            raise PolicyLoadError(f"cannot read {path}: {exc}", policy=name) from exc
        return self.load(data, name=name)

    def _deserialize(self, artifact: bytes, name: str) -> wasmtime.Module:
        try:
            return wasmtime.Module.deserialize(self.engine, artifact)
        except wasmtime.WasmtimeError as exc:
            raise PolicyCompileError(
                f"the compiled artifact did not load: {exc}", policy=name
            ) from exc

    def compile(self, data: bytes, *, name: str = "") -> wasmtime.Module:
        """``load(data).module``."""
        return self.load(data, name=name).module

    # -- disk --------------------------------------------------------------------

    def _from_disk(self, digest: str, name: str) -> wasmtime.Module | None:
        path = self.entry_path(digest)
        if path is None:
            return None
        try:
            entry = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("module cache: cannot read %s: %s", path, exc)
            return None
        problem = _check_entry(entry, digest)
        if problem is None:
            try:
                module = wasmtime.Module.deserialize(self.engine, entry[_HEADER_LEN:])
            except wasmtime.WasmtimeError as exc:
                problem = f"wasmtime refused it: {exc}"
            else:
                self._disk_hits += 1
                return module
        self._disk_rejected += 1
        logger.warning(
            "module cache: dropping bad entry %s (%s), recompiling",
            path.name,
            problem,
            extra={"policy": name, "kind": "cache", "error": problem},
        )
        path.unlink(missing_ok=True)
        return None

    def _to_disk(self, digest: str, artifact: bytes) -> None:
        path = self.entry_path(digest)
        if path is None:
            return
        entry = CACHE_MAGIC + bytes.fromhex(digest) + hashlib.sha256(artifact).digest() + artifact
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(entry)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            logger.warning("module cache: cannot write %s: %s", path, exc)


def _check_entry(entry: bytes, digest: str) -> str | None:
    """Why ``entry`` is not a valid artifact of module ``digest`` (None if it is)."""
    if len(entry) <= _HEADER_LEN:
        return f"truncated ({len(entry)} bytes)"
    if entry[: len(CACHE_MAGIC)] != CACHE_MAGIC:
        return "bad magic"
    module_digest = entry[len(CACHE_MAGIC) : len(CACHE_MAGIC) + 32]
    if module_digest.hex() != digest:
        return "entry is for another module"
    artifact_digest = entry[len(CACHE_MAGIC) + 32 : _HEADER_LEN]
    if hashlib.sha256(entry[_HEADER_LEN:]).digest() != artifact_digest:
        return "artifact digest mismatch"
    return None


def _private_dir(path: Path) -> Path | None:
    """``path`` created 0700 if missing; None (with a warning) if it is not private to us."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        logger.warning("module cache: cannot use %s: %s; on-disk cache off", path, exc)
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        logger.warning(
            "module cache: %s is not private to this user (owner %d, mode %o); on-disk cache off",
            path,
            info.st_uid,
            stat.S_IMODE(info.st_mode),
        )
        return None
    return path


ModuleSource = bytes | str | os.PathLike[str] | CompiledModule
"""A policy module: Wasm/WAT bytes, a path to a ``.wasm`` file, or an already compiled one."""


def provisional_name(module: ModuleSource) -> str:
    """Name to report before the descriptor is read."""
    if isinstance(module, bytes):
        return "<bytes>"
    if isinstance(module, CompiledModule):
        return f"<{module.digest[:12]}>"
    return Path(module).stem


def compile_source(module: ModuleSource, cache: ModuleCache, name: str) -> CompiledModule:
    """``module`` compiled through ``cache`` (as it is when already compiled)."""
    if isinstance(module, CompiledModule):
        return module
    if isinstance(module, bytes):
        return cache.load(module, name=name)
    return cache.load_path(module, name=name)
