"""Re-execution: a new run of a stored run's job that reuses what already succeeded.

Steps that succeeded in the parent are not run again; their outputs are loaded from
where the parent stored them (found in the parent's STEP_OUTPUT events).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle

from plait._load import load_job
from plait._plan.selection import select_nodes
from plait._run.outputs import StepOutputs, outputs_from_events
from plait._storage.base import RunStatus
from plait.errors import PlaitError, StorageError
from plait.events import EventType

if TYPE_CHECKING:
    import threading

    from plait._defs.job import JobDefinition
    from plait.events import Event
    from plait.executors.base import Executor
    from plait.instance import Instance
    from plait.result import RunResult

PARENT_TAG = "plait/parent_run_id"


def reexecute(
    run_id: str,
    *,
    from_failure: bool = False,
    steps: list[str] | None = None,
    instance: Instance | None = None,
    job: JobDefinition | None = None,
    executor: str | Executor | None = None,
    run_config: Mapping[str, Any] | None = None,
    resources: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
    tags: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """Run a stored run's job again as a new run whose parent is ``run_id``.

    ``from_failure=True`` runs only what failed, was skipped or never ran; ``steps=[...]``
    runs only those steps. Everything else that succeeded is reused from the parent.
    ``tags`` are added to the parent's; ``cancel`` and ``on_event`` work as in ``execute``.
    """
    from plait._run.execute import execute_job
    from plait.instance import Instance

    if from_failure and steps:
        raise PlaitError("reexecute: pass from_failure=True or steps=[...], not both")
    instance = instance if instance is not None else Instance()
    parent = instance.storage.get_run(run_id)
    if parent is None:
        where = instance.home or "the ephemeral instance"
        raise PlaitError(f"no run {run_id!r} in {where}; `plait runs list` shows the stored runs")
    job = job or _load_parent_job(parent.job_pointer, parent.job_pickle, run_id)
    if from_failure and parent.status is RunStatus.SUCCESS:
        raise PlaitError(f"run {run_id} succeeded: there is no failure to re-execute from")

    events = instance.storage.get_events(run_id)
    succeeded = {
        e.step_key
        for e in events
        if e.step_key
        and (
            e.event_type is EventType.STEP_SUCCESS
            or (e.event_type is EventType.STEP_OUTPUT and e.data.get("producer_run_id", run_id) != run_id)
        )
    }
    outputs = outputs_from_events(events)
    reusable = {key: outputs.get(key) or StepOutputs(run_id) for key in succeeded}
    in_memory = sorted(
        f"{key}.{rec.output_name}"
        for key, outs in reusable.items()
        for rec in outs.records.values()
        if rec.location is None
    )
    if (from_failure or steps) and in_memory:
        raise StorageError(
            f"run {run_id} kept outputs in memory ({', '.join(in_memory[:5])}"
            f"{', ...' if len(in_memory) > 5 else ''}), and they are gone with its process, so "
            "they cannot be reused. Re-executing needs stored outputs: configure an "
            "FsspecIOManager (or use a persistent Instance, whose default stores outputs on disk)"
        )
    op_selection = None
    if from_failure:
        reused = reusable
    elif steps:
        unknown = sorted(s for s in steps if s.split("[", 1)[0] not in job.nodes)
        if unknown:
            raise PlaitError(f"reexecute: no step(s) {unknown} in job {job.name!r}; its ops are {', '.join(job.nodes)}")
        op_selection = sorted({s.split("[", 1)[0] for s in steps})
        # what is downstream of a re-run step would be stale if reused: leave it out
        downstream = select_nodes(job.nodes, [f"{n}*" for n in op_selection]) - set(op_selection)
        reused = {
            k: v for k, v in reusable.items()
            if k not in steps and k.split("[", 1)[0] not in downstream
        }
    else:
        reused = {}
    return execute_job(
        job,
        run_config=run_config if run_config is not None else parent.run_config,
        executor=executor,
        instance=instance,
        op_selection=op_selection,
        tags={**parent.tags, **(tags or {}), PARENT_TAG: run_id},
        raise_on_error=raise_on_error,
        resources=resources,
        parent_run_id=run_id,
        reused=reused,
        cancel=cancel,
        on_event=on_event,
    )


def _load_parent_job(pointer: str | None, pickled: bytes | None, run_id: str) -> JobDefinition:
    if pointer:
        return load_job(pointer)
    if pickled:
        return cloudpickle.loads(pickled)
    raise PlaitError(
        f"run {run_id} recorded no way to load its job (no code pointer and it did not "
        "pickle); pass job=... to reexecute()"
    )
