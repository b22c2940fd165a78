"""One worker process of the multiprocess executor, seen from the coordinator: how it is
started, signalled, reaped, and how its death is described.

Deaths are watched through a pidfd (Linux) where possible: it becomes readable the moment
the process exits, even when a process the op forked still holds the worker's pipes or
``multiprocessing``'s sentinel (then those would never signal the death).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import OrderedDict
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any

from plait.executors import _mp_worker

if TYPE_CHECKING:
    from plait.executors.multiprocess import MpHandle

FAULT_TEXT_LIMIT = 64 * 1024


@contextlib.contextmanager
def main_module_hidden() -> Any:
    """Start a spawn worker without it re-running the user's main script.

    ``multiprocessing`` makes a spawned child import the parent's ``__main__`` (so that
    functions pickled by reference resolve), which re-runs an unguarded script's
    ``job.execute(...)`` in every worker. plait ships jobs with cloudpickle, which pickles
    ``__main__`` definitions by value, so workers never need the main module: while the
    child's start-up data is taken, ``__main__`` shows no file or spec to import.
    """
    import sys

    main = sys.modules.get("__main__")
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if main and name in main.__dict__}
    try:
        for name in saved:
            setattr(main, name, None) if name == "__spec__" else delattr(main, name)
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


class WorkerProcess:
    """A pool process, its two pipes, and what the coordinator knows of it."""

    def __init__(self, ctx: BaseContext, number: int, preload: list[str], fault_path: str,
                 inherited: list[int]) -> None:
        task_reader, self.tasks = ctx.Pipe(duplex=False)
        self.results, result_writer = ctx.Pipe(duplex=False)
        if ctx.get_start_method() == "fork":  # a forked child also gets our ends of its own pipes
            inherited = [*inherited, self.tasks.fileno(), self.results.fileno()]
        self.fault_path = fault_path
        self.process = ctx.Process(  # type: ignore[attr-defined]
            target=_mp_worker.main,
            args=(task_reader, result_writer, list(preload), fault_path, inherited),
            name=f"plait-mp-worker-{number}",
        )
        with main_module_hidden():
            self.process.start()
        # our copies of the child's ends must go, so that its death reads as EOF / EPIPE
        task_reader.close()
        result_writer.close()
        self.pid: int = self.process.pid  # type: ignore[assignment]
        self._pidfd = _pidfd(self.pid)
        self.sentinel: int = self._pidfd if self._pidfd is not None else self.process.sentinel
        self.ready = False
        """Preloaded and serving: it has its own process group and may get tasks."""
        self.current: MpHandle | None = None
        self.jobs: OrderedDict[str, Any] = OrderedDict()
        """Mirror of the worker's job LRU (``_mp_worker.remember``)."""
        self.kill_at: float | None = None
        """Set once it is being terminated: when SIGKILL follows the SIGTERM."""
        self.killed = False
        self.unreachable = False
        """A send failed: it is dying, its sentinel will tell."""
        self.exited = False

    @property
    def idle(self) -> bool:
        return (self.ready and self.current is None and self.kill_at is None
                and not self.unreachable and not self.exited)

    def send(self, data: bytes) -> None:
        self.tasks.send_bytes(data)

    def signal(self, signum: int) -> None:
        """Signal the worker and, once it leads its own group, what the op started too."""
        if self.ready:
            try:
                os.killpg(self.pid, signum)
                return
            except (ProcessLookupError, PermissionError):
                pass  # no such group (setpgid failed): the worker alone, below
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signum)

    def terminate(self, grace: float, now: float) -> None:
        if self.kill_at is None:
            self.kill_at = now + grace
            self.signal(signal.SIGTERM)

    def reap(self, timeout: float) -> int | None:
        """Wait for the exit (bounded; SIGKILL after ``timeout``), kill what it left in its
        process group, and return the exit code (negative: the signal that ended it)."""
        if not wait([self.sentinel], timeout):
            self.signal(signal.SIGKILL)
            wait([self.sentinel], 1.0)
        if self.ready:
            # an unreaped worker's pid (its group id) cannot be reused, so this reaches only
            # its leftovers; under forkserver the server reaps at once, so this is best effort
            self.signal(signal.SIGKILL)
        self.process.join(1.0)
        return self.process.exitcode

    def fault_text(self) -> str | None:
        """What faulthandler wrote on a fatal signal (SIGSEGV, SIGABRT, ...), if anything."""
        try:
            with open(self.fault_path, errors="replace") as f:
                text = f.read(FAULT_TEXT_LIMIT)
        except OSError:
            return None
        return text.strip() or None

    def close(self) -> None:
        """Release our ends of its pipes and its pidfd (after it exited)."""
        self.exited = True
        for conn in (self.tasks, self.results):
            _close(conn)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        with contextlib.suppress(ValueError):  # still running after a failed kill: the OS's now
            self.process.close()
        with contextlib.suppress(OSError):
            os.unlink(self.fault_path)


def death_cause(exitcode: int | None) -> str:
    """``died with signal SIGKILL (...)`` / ``exited with code 3``."""
    if exitcode is None:
        return "stopped answering and could not be reaped"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ""
        if -exitcode == signal.SIGKILL:
            hint = " (sent by another process or by the kernel's OOM killer when memory runs out)"
        elif -exitcode in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
            hint = " (a crash in native code; the Python stack at the crash is attached)"
        return f"died with signal {name}{hint}"
    return f"exited with code {exitcode}"


def other_threads() -> list[str]:
    """Names of the threads running besides the calling one (what ``fork`` would lose)."""
    me = threading.current_thread()
    return sorted(t.name for t in threading.enumerate() if t is not me and t.is_alive())


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:  # old kernel, or a sandbox that forbids it: fall back to the sentinel
        return None


def _close(conn: Connection) -> None:
    with contextlib.suppress(OSError):
        conn.close()
