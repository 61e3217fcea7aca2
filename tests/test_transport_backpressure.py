"""The UDP endpoint when the kernel pushes back: a full socket buffer (EAGAIN) queues,
the queue drops at its limit, and a kernel that refuses GSO gets one send per datagram.

Real sockets. A full send buffer needs a slow link: loopback hands a datagram on at
once, so that test runs in a network namespace of its own (``unshare --net``) whose
loopback has a ``tbf`` qdisc (8 Mbit/s) holding packets, which keeps them charged to
the sending socket.
"""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

from edgeswarm.transport.api import TransportSettings
from edgeswarm.transport.endpoint import (
    MAX_SEND_BACKLOG,
    SOL_UDP,
    UDP_SEGMENT,
    UdpEndpoint,
)

SO_NO_CHECK = 11
"""Linux: send UDP without checksums; the kernel then refuses GSO with EINVAL."""


def _kernel_refuses_gso_without_checksums() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
            try:
                tx.sendmsg([bytes(3000)], [(SOL_UDP, UDP_SEGMENT, struct.pack("@H", 1000))], 0,
                           rx.getsockname())  # fmt: skip
            except OSError as error:
                return error.errno == errno.EINVAL
    return False


@pytest.mark.skipif(sys.platform != "linux", reason="UDP GSO is a Linux feature")
async def test_gso_refused_by_the_kernel_falls_back_to_one_send_per_datagram() -> None:
    if not _kernel_refuses_gso_without_checksums():
        pytest.skip("this kernel does not refuse GSO on a socket without checksums")
    loop = asyncio.get_running_loop()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    endpoint = UdpEndpoint(tx, TransportSettings(segmentation_offload=True))
    received: list[bytes] = []
    arrived = asyncio.Event()

    def readable() -> None:
        while True:
            try:
                received.append(rx.recv(65536))
            except BlockingIOError:
                break
        arrived.set()

    loop.add_reader(rx.fileno(), readable)
    try:
        address = rx.getsockname()
        first = [(bytes([n]) * 1000, address) for n in range(10)]  # one GSO group of 10
        endpoint.send_datagrams(first, None)  # type: ignore[arg-type]
        second = [(bytes([n]) * 1000, address) for n in range(10, 20)]
        endpoint.send_datagrams(second, None)  # type: ignore[arg-type]
        async with asyncio.timeout(10):
            while len(received) < 20:
                arrived.clear()
                await arrived.wait()
    finally:
        loop.remove_reader(rx.fileno())
        endpoint.close()
        rx.close()
    # every datagram, whole and in order, although the kernel refused to segment them
    assert received == [data for data, _ in first + second]
    assert endpoint.dropped_sends == 0


_SENDER = textwrap.dedent(
    """
    import asyncio, json, os, socket
    from edgeswarm.transport.endpoint import MAX_SEND_BACKLOG, TransportSettings, UdpEndpoint

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        settings = TransportSettings(socket_buffer_bytes=4096, segmentation_offload=False)
        endpoint = UdpEndpoint(tx, settings)
        sent = MAX_SEND_BACKLOG + 1000
        got = []
        done = asyncio.Event()

        def readable() -> None:
            while True:
                try:
                    got.append(int.from_bytes(rx.recv(2048)[:4], "big"))
                except BlockingIOError:
                    break
            if len(got) >= sent - endpoint.dropped_sends:
                done.set()

        loop.add_reader(rx.fileno(), readable)
        for seq in range(sent):  # in one go: far faster than 8 Mbit/s
            endpoint.sendto(seq.to_bytes(4, "big") + bytes(96), rx.getsockname(), None)
        dropped = endpoint.dropped_sends
        await asyncio.wait_for(done.wait(), 30)
        after = endpoint.dropped_sends
        endpoint.sendto((sent).to_bytes(4, "big"), rx.getsockname(), None)  # queue empty now
        done.clear()
        await asyncio.wait_for(done.wait(), 10)
        print(json.dumps({"sent": sent, "dropped": dropped, "dropped_later": after - dropped,
                          "received": got}))

    # One CPU: loopback hands each datagram to the backlog of the CPU that sent it, so a
    # sender moved between CPUs mid-burst can see its datagrams arrive out of order (the
    # kernel's doing, not the endpoint's); pinned, the tbf watchdog fires there too.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    asyncio.run(main())
    """
)


def _netns_tools() -> str | None:
    """Why the namespace test cannot run here, or None."""
    for tool in ("unshare", "ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux, iproute2; scripts/test installs them as root)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot make a network namespace (root needed): {probe.stderr.decode()[:200]}"
    return None


@pytest.mark.integration
def test_a_full_send_buffer_queues_drops_at_the_limit_and_drains_in_order() -> None:
    why = _netns_tools()
    if why is not None:
        pytest.skip(why)
    setup = "ip link set lo up && tc qdisc add dev lo root tbf rate 8mbit burst 4kb limit 1mb"
    result = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", f'{setup} && exec "$0" -c "$1"',
         sys.executable, _SENDER],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    sent, dropped, received = report["sent"], report["dropped"], report["received"]
    # The kernel took a few datagrams, then said EAGAIN: the endpoint queued the next
    # MAX_SEND_BACKLOG and dropped the rest (QUIC's loss recovery resends what matters).
    accepted_by_kernel = sent - dropped - MAX_SEND_BACKLOG
    assert 0 < accepted_by_kernel < 1000, report | {"received": len(received)}
    assert report["dropped_later"] == 0  # nothing dropped while the queue drained
    # every datagram not dropped arrived, in the order sent, then the one sent after
    assert received == [*range(sent - dropped), sent]
