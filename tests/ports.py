"""Free TCP ports on loopback for the servers the tests and benchmarks start.

A port taken from the kernel with bind(port 0) lies in the ephemeral range, and the kernel may hand
the same number out again the moment we let it go. The Temporal dev server binds port 0 for its
own internal services while it starts, so it once took the very port we had just chosen for its
frontend and crashed ("bind: address already in use"). Ports picked below the ephemeral range can
never be handed out that way; each is still probed, and never given out twice by one process.
"""

import random
import socket
from pathlib import Path

_LOWEST = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()


def _below_ephemeral() -> range:
    try:
        first_ephemeral = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32_768  # Linux's default
    return range(_LOWEST, max(first_ephemeral, _LOWEST + 1_000))


def free_port() -> int:
    """A port nothing listens on now, outside the kernel's ephemeral range."""
    candidates = _below_ephemeral()
    for _ in range(200):
        port = random.choice(candidates)
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port found in {candidates.start}-{candidates.stop - 1}")
