"""Skip-or-fail for tests that need a real service binary.

On a developer machine a missing service (redis-server, moto) skips its tests with a loud
reason. CI sets ``PLAIT_REQUIRE_SERVICES=1``, which turns every such skip into a failure,
so a green CI always means the real engines ran.
"""

from __future__ import annotations

import os
import socket

import pytest


def services_required() -> bool:
    return os.environ.get("PLAIT_REQUIRE_SERVICES", "") not in ("", "0", "false")


def missing_service(reason: str) -> None:
    """Skip (or, under PLAIT_REQUIRE_SERVICES=1, fail) the current test."""
    if services_required():
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(f"SERVICE MISSING, test not run: {reason}")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> bool:
    """Block until something accepts connections on 127.0.0.1:port, up to ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False
