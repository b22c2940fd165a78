"""The worker side of the multiprocess executor: the loop each pool process runs.

A worker owns two one-way pipes to the coordinator, shared with no other process, so a
worker killed in the middle of a write can garble only its own pipe (the coordinator then
sees its death) and never blocks its siblings the way a shared queue's lock would.

Coordinator -> worker (``tasks``), one pickled tuple per message:

- ``(RUN, task_id, job_key, job_bytes | None, task_bytes)``: run one step attempt
  (``encode_task``: the cloudpickled fields of the ``StepTask``, its job left out when
  ``job_key`` names it). The job's cloudpickled bytes come with the
  first task of that job only; later tasks name it by ``job_key`` and the worker keeps
  the bytes (and ``WorkerState`` the loaded job).
- ``(CLOSE_RUN, run_id)``: the run ended; tear down its resources in this process.
- ``(STOP,)``: tear everything down and exit.

Worker -> coordinator (``results``):

- ``(READY, pid)`` once ``preload_modules`` are imported, or ``(INIT_FAILED, text)``;
- ``(EVENT, step_event)`` for each live event (STEP_START, LOG) as the step runs;
- ``(DONE, task_id, outcome)`` at the end of the attempt, or
  ``(FAILED, task_id, kind, message)`` when the outcome itself could not be produced or sent.

Signals: SIGINT is ignored (Ctrl-C reaches the coordinator, which cancels the run and
terminates the workers it must); the first SIGTERM unwinds the step (``finally`` blocks
run, resources are torn down) and the worker exits; a second SIGTERM, or the
coordinator's SIGKILL after a short grace, ends it at once. Each worker leads its own
process group, so those signals also reach processes the op started. Fatal signals
(SIGSEGV, SIGABRT, ...) dump the Python stack to ``fault_path`` (faulthandler), which the
coordinator attaches to the crash it reports.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import os
import pickle
import signal
import sys
import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from plait._run.step import WorkerState, execute_step, portable
from plait.events import StepEvent
from plait.executors.base import InputHandle, InputSpec, JobRef, StepOutcome, StepTask
from plait.executors.process_groups import lead_own_group

RUN = "run"
CLOSE_RUN = "close_run"
STOP = "stop"
READY = "ready"
INIT_FAILED = "init_failed"
EVENT = "event"
DONE = "done"
FAILED = "failed"

JOBS_KEPT = 8
"""Job pickles a worker keeps; the coordinator mirrors this LRU to know what to resend."""


def remember(jobs: OrderedDict[str, Any], key: str, value: Any = None) -> None:
    """Mark ``key`` used (storing ``value`` if given) in a ``JOBS_KEPT``-sized LRU; a
    missing key without a value raises KeyError.

    The coordinator and the worker apply this to the same sequence of keys, so they agree
    on which job pickles the worker still holds without asking it."""
    if value is not None:
        jobs[key] = value
    jobs.move_to_end(key)
    while len(jobs) > JOBS_KEPT:
        jobs.popitem(last=False)


@dataclass(frozen=True)
class KeyedJobRef(JobRef):
    """A ``JobRef`` whose cache key is known: saves hashing the job bytes on every step."""

    key: str = ""

    @property
    def cache_key(self) -> str:
        return self.key


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler. A KeyboardInterrupt, so that ``execute_step`` lets
    it through instead of recording it as the op's failure."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process
    raise Terminated()


class _Sender:
    """Sends messages to the coordinator; ops may log from several threads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple) -> None:
        data = dumps(message)
        with self._lock:
            self._conn.send_bytes(data)

    def event(self, event: StepEvent) -> None:
        self.send((EVENT, event))


def main(tasks: Connection, results: Connection, preload: list[str], fault_path: str,
         inherited: list[int]) -> None:
    """Entry point of a worker process (the ``multiprocessing`` target). ``inherited``:
    descriptors a forked worker got from the coordinator and must not keep."""
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    lead_own_group()  # what the op starts dies with this worker (_mp_process.signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        fault_file = open(fault_path, "w")  # noqa: SIM115 - open for the worker's lifetime
    except OSError:  # its folder is gone (a temp cleaner?): crash stacks go to stderr then
        fault_file = sys.stderr
    with fault_file:
        faulthandler.enable(file=fault_file, all_threads=True)
        sender = _Sender(results)
        try:
            for name in preload:
                importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - reported to the coordinator, which refuses to start
            sender.send((INIT_FAILED, traceback.format_exc()))
            return
        sender.send((READY, os.getpid()))
        _serve(tasks, sender)


def _serve(tasks: Connection, sender: _Sender) -> None:
    state = WorkerState()
    jobs: OrderedDict[str, bytes] = OrderedDict()
    try:
        while True:
            try:
                message = pickle.loads(tasks.recv_bytes())
            except EOFError:
                return  # the coordinator is gone: nobody is left to report to
            kind = message[0]
            if kind == RUN:
                _run(message, jobs, state, sender)
            elif kind == CLOSE_RUN:
                state.close_run(message[1])
            elif kind == STOP:
                return
    except (Terminated, BrokenPipeError):
        return
    finally:
        state.close()


def _run(message: tuple, jobs: OrderedDict[str, bytes], state: WorkerState, sender: _Sender) -> None:
    _, task_id, job_key, job_bytes, task_bytes = message
    try:
        task = decode_task(task_bytes, _job(job_key, job_bytes, jobs))
    except KeyError:
        sender.send((FAILED, task_id, "lost", f"plait bug: the worker no longer holds job {job_key}"))
        return
    except Exception as exc:  # noqa: BLE001 - e.g. a class the worker cannot import
        sender.send((FAILED, task_id, "error", f"the worker could not read the step task: "
                     f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    with contextlib.suppress(Exception):
        # load the job (on a worker's first step of it: unpickling imports the ops' modules)
        # before the step starts, so that the op's timeout counts from the op's own start;
        # if loading fails, execute_step fails the same way and reports it
        state.job(task)
    outcome = execute_step(task, sender.event, state)
    try:
        sender.send((DONE, task_id, _sendable(outcome)))
    except BrokenPipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - an outcome that does not pickle
        sender.send((  # kind "error": the op's values are at fault, trying again will not help
            FAILED, task_id, "error",
            f"step {task.step_key!r} finished, but its outcome could not be sent to the "
            f"coordinator: {type(exc).__name__}: {exc}. Keep output metadata and log data to "
            "plain values (str, numbers, lists, dicts)",
        ))


def _job(job_key: str | None, job_bytes: bytes | None, jobs: OrderedDict[str, bytes]) -> JobRef | None:
    """The job of a task that names it by key (None: the task carries its own)."""
    if job_key is None:
        return None
    remember(jobs, job_key, job_bytes)
    return KeyedJobRef(pickled=jobs[job_key], key=job_key)


# A task travels as its fields, with plait's own records (InputSpec, InputHandle, JobRef)
# flattened to tuples: cloudpickle then only meets builtins and user values, which makes
# it about six times faster than on the dataclasses (it inspects every class it meets).
_SPEC_FIELDS = tuple(f.name for f in fields(InputSpec))
_HANDLE_FIELDS = tuple(f.name for f in fields(InputHandle))


def encode_task(task: StepTask, with_job: bool) -> bytes:
    """What ``decode_task`` turns back into ``task``; ``with_job=False`` leaves the job
    bytes out (the worker has them) but keeps its code pointer."""
    state = dict(task.__dict__)
    state["resources"] = None  # in-process only, like StepTask pickling
    state["job"] = (task.job.pointer, task.job.pickled if with_job else None)
    state["inputs"] = {name: _encode_spec(spec) for name, spec in task.inputs.items()}
    # cloudpickle, not pickle: a value from the caller's __main__ (a notebook) goes by value
    return cloudpickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def decode_task(data: bytes, job: JobRef | None) -> StepTask:
    state = pickle.loads(data)
    pointer, pickled = state["job"]
    state["job"] = replace(job, pointer=pointer) if job is not None else JobRef(pointer, pickled)
    state["inputs"] = {name: _decode_spec(spec) for name, spec in state["inputs"].items()}
    task = StepTask.__new__(StepTask)
    task.__setstate__(state)
    return task


def _encode_spec(spec: InputSpec) -> tuple:
    return tuple(
        tuple(tuple(getattr(h, n) for n in _HANDLE_FIELDS) for h in spec.handles)
        if name == "handles" else getattr(spec, name)
        for name in _SPEC_FIELDS
    )


def _decode_spec(values: tuple) -> InputSpec:
    kwargs = dict(zip(_SPEC_FIELDS, values, strict=True))
    kwargs["handles"] = tuple(InputHandle(*h) for h in kwargs["handles"])
    return InputSpec(**kwargs)


def dumps(message: Any) -> bytes:
    """Plain pickle (three times faster); cloudpickle for what it cannot do, such as the
    classes of a job that was itself unpickled by value."""
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001
        return cloudpickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _sendable(outcome: StepOutcome) -> StepOutcome:
    """``portable`` drops an exception that does not pickle; this also drops one that does
    not unpickle (e.g. a custom exception whose ``__init__`` takes other arguments), which
    would otherwise fail in the coordinator, where the step can no longer be reported."""
    outcome = portable(outcome)
    failure = outcome.failure
    if failure is None or failure.exception is None:
        return outcome
    try:
        pickle.loads(dumps(failure.exception))
        return outcome
    except Exception:  # noqa: BLE001
        return replace(outcome, failure=replace(failure, exception=None))
