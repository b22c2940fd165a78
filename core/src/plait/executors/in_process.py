"""The in-process executor: steps run one at a time in the coordinator's own process.

It is a synchronous executor on the same run loop as every other: ``submit`` queues the
task and ``wait`` runs it. A step with a ``timeout`` runs on a helper thread so the
coordinator can give up on it; Python cannot kill a thread, so an abandoned step runs on
in the background, but stores nothing more (its outputs are fenced off).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from plait._run.step import WorkerState, execute_step
from plait.executors.base import Executor, StepHandle, StepOutcome, StepTask

log = logging.getLogger("plait.executors.in_process")


class InProcessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(eq=False)
class _Handle(StepHandle):
    outcome: StepOutcome | None = None
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    canceled: threading.Event = field(default_factory=threading.Event)
    interrupted: bool = False


class InProcessExecutor(Executor):
    name: ClassVar[str] = "in_process"
    config_model: ClassVar[type[BaseModel]] = InProcessConfig
    crosses_processes: ClassVar[bool] = False

    def __init__(self, config: BaseModel | dict | None = None, **kwargs: object) -> None:
        super().__init__(config, **kwargs)
        self._queue: deque[_Handle] = deque()
        self._state = WorkerState()

    def submit(self, task: StepTask) -> StepHandle:
        handle = _Handle(task)
        self._queue.append(handle)
        return handle

    def _run(self, handle: _Handle) -> None:
        try:
            handle.outcome = execute_step(handle.task, self.deliver, self._state, handle.canceled)
        except KeyboardInterrupt:
            if handle.thread is None:
                raise  # inline: it reaches the coordinator as it would from SIGINT
            handle.interrupted = True  # on a helper thread: wait() raises it in the coordinator
        finally:
            handle.done.set()

    def wait(self, handles: Sequence[StepHandle], timeout: float | None) -> list[StepOutcome]:
        threaded = [h for h in handles if isinstance(h, _Handle) and h.thread is not None]
        finished = [h for h in threaded if h.done.is_set()]
        if not finished and self._queue and not threaded:
            handle = self._queue.popleft()
            if handle.task.timeout is None:
                self._run(handle)
            else:
                handle.thread = threading.Thread(target=self._run, args=(handle,), daemon=True,
                                                 name=f"plait-step-{handle.task.step_key}")
                handle.thread.start()
                handle.done.wait(timeout)
            if handle.done.is_set():
                finished = [handle]
        elif not finished and threaded:
            threaded[0].done.wait(timeout)
            finished = [h for h in threaded if h.done.is_set()]
        if any(h.interrupted for h in finished if isinstance(h, _Handle)):
            raise KeyboardInterrupt
        return [h.outcome for h in finished if h.outcome is not None]

    def cancel(self, handle: StepHandle) -> None:
        if isinstance(handle, _Handle):
            handle.canceled.set()
            if handle in self._queue:
                self._queue.remove(handle)

    def run_finished(self, run_id: str) -> None:
        # a failed teardown must not fail a finished run, but must not vanish either
        for problem in self._state.close_run(run_id):
            log.warning("run %s: %s", run_id, problem)

    def stop(self) -> None:
        for problem in self._state.close():
            log.warning("%s", problem)
