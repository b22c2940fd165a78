"""Which of a job's modules travel by value in its pickle (``ship_code``).

cloudpickle pickles the classes and functions of an importable module by reference
(``module.name``), so a worker must be able to import that module. (An op's own function
travels by value anyway, since its module attribute is the OpDefinition; the Config
classes, resources and helpers it uses do not.) A file loaded by path (``plait run
jobs/etl.py``) always travels by value: ``plait._load`` registers it so for every
executor. With ``ship_code`` so do all the job's own modules, i.e. those not installed
as a package.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plait import JobDefinition, StepTask

def modules_to_ship(job: JobDefinition, ship_code: bool) -> list[ModuleType]:
    """The modules whose code the job's pickle must carry by value, sorted by name."""
    names = {getattr(job.graph.fn, "__module__", None)}
    names.update(getattr(node.op.fn, "__module__", None) for node in job.nodes.values())
    names.update(type(resource).__module__ for resource in job.resources.values())
    chosen = []
    for name in sorted(n for n in names if n and n != "__main__"):
        module = sys.modules.get(name)
        if module is None:
            continue
        if ship_code and _users_own(module):
            chosen.append(module)
    return chosen


def _users_own(module: ModuleType) -> bool:
    top = module.__name__.split(".", 1)[0]
    if top.startswith("plait") or top in sys.stdlib_module_names:
        return False
    file = getattr(module, "__file__", None)
    if file is None:
        return False
    parts = Path(file).parts
    return "site-packages" not in parts and "dist-packages" not in parts


class ShippedJobs:
    """Job pickles re-made with the job's code by value, found again by the digest of the
    pickle the coordinator made (core pickles the job before the executor sees it)."""

    def __init__(self, ship_code: bool) -> None:
        self.ship_code = ship_code
        self._by_digest: dict[str, bytes] = {}

    def prepare(self, job: JobDefinition) -> None:
        import cloudpickle

        modules = modules_to_ship(job, self.ship_code)
        if not modules:
            return
        # Pickle the job as the coordinator just did, to know its bytes at submit time,
        # then once more with its modules by value.
        original = cloudpickle.dumps(job)
        for module in modules:
            cloudpickle.register_pickle_by_value(module)
        shipped = cloudpickle.dumps(job)
        if shipped != original:
            self._by_digest[_digest(original)] = shipped

    def for_task(self, task: StepTask) -> StepTask:
        """The task with the shipped pickle in place of the coordinator's, if any."""
        pickled = task.job.pickled
        if not self._by_digest or pickled is None:
            return task
        shipped = self._by_digest.get(_digest(pickled))
        return task if shipped is None else replace(task, job=replace(task.job, pickled=shipped))


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
