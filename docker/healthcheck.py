"""The image's HEALTHCHECK: 0 when a daemon in this container answers ``/healthz``.

Each role serves ``/healthz`` beside ``/metrics`` on its own default port
(gateway 9464, edge 9465, inference node 9466); ``EDGESWARM_HEALTHCHECK_URL``
names another. Kubernetes does not use this: its probes call ``/healthz`` and
``/readyz`` themselves (k3s/base).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URLS = [f"http://127.0.0.1:{port}/healthz" for port in (9464, 9465, 9466)]


def main() -> int:
    override = os.environ.get("EDGESWARM_HEALTHCHECK_URL")
    for url in [override] if override else DEFAULT_URLS:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return 0
        except (OSError, urllib.error.URLError):
            continue
    print("no edgeswarm daemon answers /healthz", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
