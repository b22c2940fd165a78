"""Finding jobs in code: ``path/file.py[:attr]`` or ``package.module[:attr]``.

Used by the CLI and by workers that receive a code pointer instead of a pickled job.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cloudpickle

from plait.errors import PlaitDefinitionError

if TYPE_CHECKING:
    from types import ModuleType

    from plait._defs.job import JobDefinition


def _load_module(target: str) -> ModuleType:
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise PlaitDefinitionError(f"no such file: {target!r} (looked at {path})")
        name = "plait_user_" + "_".join(path.with_suffix("").parts[-3:]).replace("-", "_").replace(".", "_")
        if name in sys.modules:
            return sys.modules[name]
        # let the file import its siblings, as `python file.py` would
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        # No worker can import this module by its made-up name: whatever of it a job's
        # pickle refers to (Config classes, helpers, resources) must travel as code.
        cloudpickle.register_pickle_by_value(module)
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise PlaitDefinitionError(
                f"no module named {target!r}: check the spelling, or that its package is "
                "installed / on PYTHONPATH (a file needs a path ending in .py)"
            ) from exc
        raise


def jobs_in(target: str) -> dict[str, JobDefinition]:
    """All jobs a module defines at top level, by attribute name."""
    from plait._defs.job import JobDefinition

    module = _load_module(target.split(":", 1)[0] if _has_attr(target) else target)
    return {name: value for name, value in vars(module).items() if isinstance(value, JobDefinition)}


def _has_attr(target: str) -> bool:
    head, sep, tail = target.rpartition(":")
    # a Windows drive letter ("C:\\x.py") is not an attribute separator
    return bool(sep) and bool(head) and "/" not in tail and "\\" not in tail


def load_job(target: str) -> JobDefinition:
    """The job at ``target``; without ``:attr`` the module must define exactly one job."""
    from plait._defs.job import JobDefinition

    if _has_attr(target):
        module_part, attr = target.rsplit(":", 1)
        module = _load_module(module_part)
        value = getattr(module, attr, None)
        if not isinstance(value, JobDefinition):
            found = sorted(n for n, v in vars(module).items() if isinstance(v, JobDefinition))
            what = "no attribute" if value is None else f"{type(value).__name__} attribute"
            raise PlaitDefinitionError(
                f"{module_part!r} has {what} {attr!r} that is a job; jobs it defines: "
                f"{found or 'none'}"
            )
        value.code_pointer = target
        return value
    jobs = jobs_in(target)
    if len(jobs) != 1:
        listing = ", ".join(sorted(jobs)) or "none"
        raise PlaitDefinitionError(
            f"{target!r} defines {len(jobs)} jobs ({listing}); name one as {target}:JOB"
        )
    name, job = next(iter(jobs.items()))
    job.code_pointer = f"{target}:{name}"
    return job


def find_code_pointer(job: JobDefinition) -> str | None:
    """A pointer another process can import, if the job is a module-level attribute of an
    importable module (not ``__main__``, not a local variable)."""
    if job.code_pointer:
        return job.code_pointer
    module_name = getattr(job.graph.fn, "__module__", None)
    if not module_name or module_name == "__main__" or module_name.startswith("plait_user_"):
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    for attr, value in vars(module).items():
        if value is job:
            return f"{module_name}:{attr}"
    return None


def pickle_job(job: JobDefinition) -> bytes:
    return cloudpickle.dumps(job)
