"""Run config: validated as a whole before any step runs.

Shape::

    ops:        {node_key: {config: {...}}}
    resources:  {resource_key: {config: {...}}}
    execution:  {executor_name: {...executor config...}}

Every problem is collected (not just the first) and reported with its path, e.g.
``ops.extract.config.rows: Input should be a valid integer``.

YAML files may take string values from the environment: ``${NAME}`` or
``${NAME:-default}`` inside a string value is replaced when the file is loaded
(``load_yaml``), so one file serves a laptop, a compose stack and a cluster. It works on
parsed values, never on the YAML text, so an environment variable cannot change the
structure of the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from plait.config import ConfigurableResource
from plait.errors import ExecutorError, RunConfigError

if TYPE_CHECKING:
    from plait._defs.job import JobDefinition

TOP_LEVEL_KEYS = ("execution", "ops", "resources")
_IO_MANAGER_HINT = (
    "; to choose storage in run config, give the job plait.ConfigurableFsspecIOManager("
    "base_url=...) instead, or no io_manager at all (the default one takes this config)"
)


@dataclass
class ValidatedRunConfig:
    raw: dict[str, Any]
    op_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    executor_name: str | None = None
    executor_config: dict[str, Any] = field(default_factory=dict)


def load_yaml(*paths: str | os.PathLike[str]) -> dict[str, Any]:
    """Read YAML run config files, replace ``${NAME}`` / ``${NAME:-default}`` in their
    string values from the environment, and deep-merge them (later files win)."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise RunConfigError(
                [f"{path}: cannot read the run config file ({exc.strerror or exc}); a string run "
                 "config is a YAML file path, pass a dict for config built in code"]
            ) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise RunConfigError([f"{path}{where}: invalid YAML: {problem}"]) from None
        if not isinstance(data, dict):
            raise RunConfigError([f"{path}: run config must be a mapping, got {type(data).__name__}"])
        problems: list[str] = []
        data = _interpolate(data, "", os.environ, problems)
        if problems:
            raise RunConfigError([f"{path}: {problem}" for problem in problems])
        merged = deep_merge(merged, data)
    return merged


# `$${` (a literal `${`), or `${...}` up to the first `}` (`close` is missing when unclosed)
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\})?")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>(?:(?!\$\{).)*))?", re.S)


def _interpolate(value: Any, where: str, environ: Mapping[str, str], problems: list[str]) -> Any:
    """``value`` with ``${NAME}`` / ``${NAME:-default}`` in its strings replaced from
    ``environ``; each unusable reference adds a ``key.path: problem`` line to ``problems``."""
    if isinstance(value, str):
        return _substitute(value, where, environ, problems)
    if isinstance(value, dict):
        return {key: _interpolate(item, f"{where}.{key}" if where else str(key), environ, problems)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, f"{where}[{i}]", environ, problems)
                for i, item in enumerate(value)]
    return value


def _substitute(text: str, where: str, environ: Mapping[str, str], problems: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("body") is None:
            return "${"  # the escape `$${`
        reference = match.group(0)
        body = _BODY.fullmatch(match.group("body"))
        if match.group("close") is None or body is None:
            problems.append(
                f"{where}: {reference!r} is not a valid environment reference; write "
                "${NAME} or ${NAME:-default} (no nesting), or $${ for a literal ${"
            )
            return reference
        name, default = body.group("name", "default")
        value = environ.get(name)
        if default is not None and not value:
            return default  # unset or empty, as in a shell or docker compose
        if value is None:
            problems.append(
                f"{where}: environment variable {name} is not set; set it, or give a "
                f"default in the file: ${{{name}:-value}}"
            )
            return reference
        return value

    return _REFERENCE.sub(replace, text)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _pydantic_problems(prefix: str, exc: pydantic.ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        path = ".".join([prefix, *(str(p) for p in err["loc"])])
        problems.append(f"{path}: {err['msg']}")
    return problems


def _section(raw: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        problems.append(f"{key}: expected a mapping, got {type(value).__name__}")
        return {}
    return dict(value)


def _config_of(path: str, entry: Any, problems: list[str]) -> dict[str, Any] | None:
    if entry is None:
        return {}
    if not isinstance(entry, Mapping):
        problems.append(f"{path}: expected a mapping with a 'config' key, got {type(entry).__name__}")
        return None
    extra = sorted(set(entry) - {"config"})
    if extra:
        problems.append(f"{path}: unknown key(s) {extra} (only 'config' is allowed here)")
    config = entry.get("config") or {}
    if not isinstance(config, Mapping):
        problems.append(f"{path}.config: expected a mapping, got {type(config).__name__}")
        return None
    return dict(config)


def validate_run_config(
    job: JobDefinition,
    run_config: Mapping[str, Any] | str | os.PathLike[str] | None,
    resources: Mapping[str, Any],
    executor_name: str | None,
) -> ValidatedRunConfig:
    """Check the whole run config against the job; raise RunConfigError listing every problem.

    ``resources`` are the job's resources with execute-time replacements applied;
    ``executor_name`` the executor chosen by argument, if any.
    """
    if isinstance(run_config, str | os.PathLike):
        run_config = load_yaml(run_config)
    raw = deep_merge(job.default_run_config, dict(run_config or {}))
    problems: list[str] = []
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    for key in unknown:
        problems.append(f"{key}: unknown top-level key (expected one of: {', '.join(TOP_LEVEL_KEYS)})")
    result = ValidatedRunConfig(raw)

    ops = _section(raw, "ops", problems)
    for key in sorted(set(ops) - set(job.nodes)):
        problems.append(f"ops.{key}: no op {key!r} in job {job.name!r}; its ops are: {', '.join(sorted(job.nodes))}")
    for key, node in job.nodes.items():
        config = _config_of(f"ops.{key}", ops.get(key), problems) if key in ops else {}
        if config is None:
            continue
        if node.op.config_param is None:
            if config:
                problems.append(f"ops.{key}.config: op {node.op.name!r} takes no config")
            continue
        try:
            node.op.config_param[1].model_validate(config)
        except pydantic.ValidationError as exc:
            problems.extend(_pydantic_problems(f"ops.{key}.config", exc))
        result.op_configs[key] = config

    res_section = _section(raw, "resources", problems)
    for key, entry in sorted(res_section.items()):
        path = f"resources.{key}"
        if key not in resources:
            problems.append(f"{path}: no resource {key!r} in this job; its resources are: {', '.join(sorted(resources)) or 'none'}")
            continue
        config = _config_of(path, entry, problems)
        if not config:
            continue
        resource = resources[key]
        if not isinstance(resource, ConfigurableResource):
            hint = _IO_MANAGER_HINT if key == "io_manager" else ""
            problems.append(f"{path}.config: {type(resource).__name__} is not a ConfigurableResource and takes no config{hint}")
            continue
        try:
            resource.with_config(config)
        except pydantic.ValidationError as exc:
            problems.extend(_pydantic_problems(f"{path}.config", exc))
        result.resource_config[key] = config

    execution = _section(raw, "execution", problems)
    if len(execution) > 1:
        problems.append(f"execution: name one executor, got {sorted(execution)}")
    elif execution:
        name, config = next(iter(execution.items()))
        if config is not None and not isinstance(config, Mapping):
            problems.append(f"execution.{name}: expected a mapping of executor config, got {type(config).__name__}")
        elif executor_name is None or executor_name == name:
            result.executor_name = name
            result.executor_config = dict(config or {})
            _check_executor_config(name, result.executor_config, problems)
    if problems:
        raise RunConfigError(problems)
    return result


def _check_executor_config(name: str, config: dict[str, Any], problems: list[str]) -> None:
    from plait.executors.registry import get_executor_class

    try:
        cls = get_executor_class(name)
    except ExecutorError as exc:
        problems.append(f"execution.{name}: {exc}")
        return
    try:
        cls.config_model.model_validate(config)
    except pydantic.ValidationError as exc:
        problems.extend(_pydantic_problems(f"execution.{name}", exc))
