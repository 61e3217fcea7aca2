"""Driver of scripts/fuzz: one fuzz target (tests/fuzz_targets.py) for a bounded time.

Coverage-guided with atheris (libFuzzer) when it is installed; else hypothesis with a
time budget. A crash leaves its input in var/fuzz/ and exits 1; turn it into a test in
tests/test_fuzz_session.py (the decoder's and session's) or tests/test_host_imports.py
(``fuzz_targets.host_imports(data)``) before fixing it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def with_atheris(target: str, seconds: int, corpus: Path) -> int:
    import atheris  # type: ignore[import-not-found]

    with atheris.instrument_imports(include=["edgeswarm.wire", "edgeswarm.edge.policy"]):
        from tests import fuzz_targets

        if target == "host_imports":
            import edgeswarm.edge.policy.heavy
            import edgeswarm.edge.policy.host_imports  # noqa: F401 (instrumented here)
    corpus.mkdir(parents=True, exist_ok=True)
    prefix = f"-artifact_prefix={corpus.parent}/{target}-"
    argv = [sys.argv[0], f"-max_total_time={seconds}", prefix, "-print_final_stats=1",
            "-max_len=4096", str(corpus)]  # fmt: skip
    atheris.Setup(argv, getattr(fuzz_targets, target))
    atheris.Fuzz()  # exits: 0 when the time is up, non-zero on a crash
    return 0


def with_hypothesis(target: str, seconds: int) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests import fuzz_targets

    run = getattr(fuzz_targets, target)
    examples = 0
    inputs = st.binary(max_size=4096)
    if target == "host_imports":  # calls shaped like real use get past the first checks
        from tests.test_host_imports import import_calls

        inputs = st.lists(import_calls(), max_size=16).map(b"".join)

    @given(inputs)
    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def property_(data: bytes) -> None:
        nonlocal examples
        examples += 1
        run(data)

    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:  # rounds of 500 fresh examples until the time is up
            property_()
    finally:
        print(f"{target}: {examples} examples (hypothesis, {seconds} s)", file=sys.stderr)
    return 0


def main() -> int:
    # the probe's guest log lines (random bytes, rate-limited) would bury libFuzzer's output
    logging.getLogger("edgeswarm.edge.agent").addHandler(logging.NullHandler())
    logging.getLogger("edgeswarm.edge.agent").propagate = False
    parser = argparse.ArgumentParser(prog="scripts/fuzzing.py")
    parser.add_argument("target", choices=["decoder", "session", "host_imports"])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--engine", choices=["atheris", "hypothesis"], default="atheris")
    args = parser.parse_args()
    if args.engine == "atheris":
        return with_atheris(
            args.target, args.seconds, ROOT / "var" / "fuzz" / f"{args.target}-corpus"
        )
    return with_hypothesis(args.target, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
