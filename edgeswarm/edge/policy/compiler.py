"""Compile an untrusted module without letting it cost the edge its memory or its time.

Compiling is where a module can hurt before it ever runs: Cranelift's memory
and time grow with the code, and a few megabytes of tiny functions take
gigabytes and seconds. So, in this order:

1. :func:`check_size`: a module (binary or WAT text) larger than
   ``max_module_bytes`` is refused before anything reads it further;
2. :func:`check_structure`: a walk over the binary's section headers (no
   decoding of code) counts the functions it defines; more than
   ``max_functions`` is refused;
3. :func:`compile_in_worker`: the compile itself runs in a child process
   (:mod:`~edgeswarm.edge.policy.engine` run by path) limited to
   ``memory_bytes`` of address space and ``timeout_s`` of wall time (and CPU
   time). The child validates the module against the ABI's features (naming
   any other feature it needs), compiles it on one thread, and hands back the
   serialized artifact, which the caller deserializes in this process (and
   keeps in its cache).

Every refusal, crash, timeout or out-of-memory of the child is a
:class:`~edgeswarm.edge.policy.errors.PolicyCompileError` (kind ``load``) that
says which limit was hit and which setting raises it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edgeswarm.edge.policy import engine as engine_module
from edgeswarm.edge.policy.engine import EngineSettings
from edgeswarm.edge.policy.errors import PolicyCompileError

WASM_MAGIC: Final = b"\0asm\x01\0\0\0"
_FUNCTION_SECTION: Final = 3
_WORKER: Final = Path(engine_module.__file__).resolve()


@dataclass(frozen=True)
class CompileLimits:
    """Bounds on a module and on compiling it (operator settings; see ``edgeswarm edge --help``)."""

    max_module_bytes: int = 8 * 1024 * 1024
    """Largest module accepted, as a binary or as WAT text (``--module-max-mb``)."""
    max_functions: int = 20_000
    """Most functions a module may define (``--module-max-functions``)."""
    memory_bytes: int = 512 * 1024 * 1024
    """Address space of the compile worker (``--compile-memory-mb``)."""
    timeout_s: float = 20.0
    """Wall-clock time the compile worker may take (``--compile-timeout``)."""

    def __post_init__(self) -> None:
        if min(self.max_module_bytes, self.max_functions, self.memory_bytes) <= 0:
            raise ValueError("compile limits must be positive")
        if not self.timeout_s > 0:
            raise ValueError("compile timeout must be positive")


def check_size(size: int, limits: CompileLimits, name: str) -> None:
    """Refuse a module of ``size`` bytes above ``max_module_bytes``."""
    if size > limits.max_module_bytes:
        raise PolicyCompileError(
            f"module is {size} bytes, more than the limit of {limits.max_module_bytes} "
            "(raise --module-max-mb to accept it)",
            policy=name,
        )


def _leb_u32(data: bytes, at: int) -> tuple[int, int]:
    """Unsigned LEB128 (at most 5 bytes) at ``at``: ``(value, next offset)``."""
    value = shift = 0
    for index in range(at, min(at + 5, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    raise PolicyCompileError(f"invalid Wasm module: bad LEB128 at byte {at}")


def defined_functions(wasm: bytes) -> int:
    """Functions the binary defines (its function section's count), from section headers only."""
    if not wasm.startswith(WASM_MAGIC):
        raise PolicyCompileError("invalid Wasm module: not a Wasm version 1 binary")
    at, count = len(WASM_MAGIC), 0
    while at < len(wasm):
        section = wasm[at]
        size, body = _leb_u32(wasm, at + 1)
        if body + size > len(wasm):
            raise PolicyCompileError(
                f"invalid Wasm module: section {section} at byte {at} runs past the end"
            )
        if section == _FUNCTION_SECTION and size:
            count += _leb_u32(wasm, body)[0]
        at = body + size
    return count


def check_structure(wasm: bytes, limits: CompileLimits, name: str) -> None:
    """Refuse a binary that defines more than ``max_functions`` functions."""
    try:
        functions = defined_functions(wasm)
    except PolicyCompileError as exc:
        raise PolicyCompileError(exc.detail, policy=name) from None
    if functions > limits.max_functions:
        raise PolicyCompileError(
            f"module defines {functions} functions, more than the limit of "
            f"{limits.max_functions} (raise --module-max-functions to accept it)",
            policy=name,
        )


def compile_in_worker(
    wasm: bytes, settings: EngineSettings, limits: CompileLimits, name: str
) -> bytes:
    """The serialized artifact of ``wasm`` for an engine with ``settings``, compiled in a child."""
    with tempfile.TemporaryDirectory(prefix="edgeswarm-compile-") as work:
        out = Path(work) / "artifact.cwasm"
        command = [
            sys.executable,
            "-I",
            str(_WORKER),
            "--settings",
            settings.to_json(),
            "--memory-bytes",
            str(limits.memory_bytes),
            "--cpu-seconds",
            str(math.ceil(limits.timeout_s) + 1),
            "--out",
            str(out),
        ]
        try:
            result = subprocess.run(
                command,
                input=wasm,
                capture_output=True,
                timeout=limits.timeout_s,
                check=False,
                env={**os.environ, "RUST_BACKTRACE": "0"},
            )
        except subprocess.TimeoutExpired:
            raise PolicyCompileError(
                f"compiling took longer than {limits.timeout_s:g} s "
                "(raise --compile-timeout to allow it)",
                policy=name,
            ) from None
        report = _report(result, limits, name)
        if not report.get("ok"):
            raise _refusal(report, name)
        artifact = out.read_bytes()
    if len(artifact) != report.get("artifact_bytes"):
        raise PolicyCompileError("compile worker wrote a truncated artifact", policy=name)
    return artifact


def _report(
    result: subprocess.CompletedProcess[bytes], limits: CompileLimits, name: str
) -> dict[str, object]:
    """The worker's JSON report, or the error its exit means."""
    stderr = result.stderr.decode("utf-8", errors="replace").strip()
    if result.returncode != 0:
        out_of_memory = (
            result.returncode in (-signal.SIGABRT, -signal.SIGKILL)
            or "memory allocation" in stderr
            or "MemoryError" in stderr
        )
        if result.returncode == -signal.SIGXCPU:
            raise PolicyCompileError(
                f"compiling used more than {limits.timeout_s:g} s of CPU "
                "(raise --compile-timeout to allow it)",
                policy=name,
            )
        if out_of_memory:
            raise PolicyCompileError(
                f"compiling needed more than {limits.memory_bytes // (1024 * 1024)} MiB "
                "(raise --compile-memory-mb to allow it)",
                policy=name,
            )
        last = stderr.splitlines()[-1] if stderr else "no message"
        raise PolicyCompileError(
            f"compile worker failed (exit {result.returncode}): {last}", policy=name
        )
    try:
        report = json.loads(result.stdout.decode("utf-8").strip().splitlines()[-1])
    except (UnicodeDecodeError, ValueError, IndexError) as exc:
        raise PolicyCompileError(
            f"compile worker said nothing readable: {exc}", policy=name
        ) from None
    if not isinstance(report, dict):
        raise PolicyCompileError("compile worker said nothing readable", policy=name)
    return report


def _refusal(report: dict[str, object], name: str) -> PolicyCompileError:
    raw_features = report.get("features")
    features = tuple(str(f) for f in raw_features) if isinstance(raw_features, list) else ()
    error = str(report.get("error", "refused"))
    if features:
        listed = ", ".join(features)
        return PolicyCompileError(
            f"module uses {listed}, which ABI v1 does not allow ({error})",
            policy=name,
            features=features,
        )
    return PolicyCompileError(f"invalid Wasm module: {error}", policy=name)
