"""Objects whose pickling stops half way, to catch writers in the middle of a write.

Pickle calls ``__reduce__`` only after everything before the object in the stream has
been written to the file, so ``[big_chunk, Pause(...)]`` stops with ``big_chunk`` already
handed to the storage backend (a local temp file, an S3 multipart upload part).

Run as a module, this is the child of the crash tests: it starts storing such a list,
prints ``MID-WRITE`` once the chunk is out, and waits to be killed.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

CHUNK_BYTES = 8 * 2**20  # more than one 5 MB S3 part, so an upload is in flight
MID_WRITE = "MID-WRITE"
CHILD_PATIENCE = 120.0  # the child gives up (and fails) if nobody kills it by then


class Pause:
    """Pickling blocks: sets ``started``, then waits for ``release`` (or raises)."""

    def __init__(
        self, started: threading.Event, release: threading.Event, fail: bool = False
    ) -> None:
        self.started = started
        self.release = release
        self.fail = fail

    def __reduce__(self) -> Any:
        self.started.set()
        if not self.release.wait(timeout=CHILD_PATIENCE):
            raise TimeoutError("Pause was never released")
        if self.fail:
            raise RuntimeError("serializer failed half way")
        return (str, ("finished",))


class Boom:
    """Pickling fails at once."""

    def __reduce__(self) -> Any:
        raise RuntimeError("serializer failed half way")


class _Announce(threading.Event):
    def set(self) -> None:
        print(MID_WRITE, flush=True)
        super().set()


def main() -> None:
    from plait_io import FsspecIOManager, OutputContext

    config = json.loads(sys.argv[1])
    manager = FsspecIOManager(config["base_url"], config["storage_options"])
    ctx = OutputContext(config["run_id"], config["step_key"], config["output_name"])
    never = threading.Event()
    manager.handle_output(ctx, [b"x" * CHUNK_BYTES, Pause(_Announce(), never)])
    sys.exit("the writer was expected to be killed mid-write")


if __name__ == "__main__":
    main()
