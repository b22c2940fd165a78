"""docker/: the image and the two compose stacks, checked without a Docker engine.

No Docker engine runs here, so nothing is built or started in containers. Instead:

- the compose files parse, every service has an image or a build whose Dockerfile exists,
  ``depends_on`` / volumes / build args name what exists, and every ``${VAR}`` is
  documented in docker/README.md and has a default or a value in docker/.env.example;
- the Dockerfile is multi-stage on python:3.11-slim, installs only wheels in its final
  stage, runs as a non-root user, holds no secrets, and its ``uv export`` works on uv.lock;
- every command line parses with the real CLI it calls (click's ``make_context`` for
  ``plait``, the installed ``dask`` CLI for ``dask scheduler`` / ``dask worker``);
- the example job of each one-shot ``run`` service loads, and its run config validates
  with the containers' environment;
- each one-shot run is rehearsed outside containers: the same ``plait run`` command line
  and the same environment, with the compose services' addresses replaced by a real Dask
  cluster, real ``plait celery worker`` processes (started from the compose command
  lines), a throwaway Redis and a moto S3 server on loopback.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
README = DOCKER / "README.md"
ENV_EXAMPLE = DOCKER / ".env.example"
COMPOSE = {"dask": DOCKER / "compose.dask.yaml", "celery": DOCKER / "compose.celery.yaml"}
RUN_TIMEOUT = 120

SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "depends_on", "deploy",
    "healthcheck", "volumes", "ports", "profiles", "init", "restart",
}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL|AWS_", re.I)
SERVICE_ADDRESS = re.compile(r"//(scheduler|worker|minio|redis)[:/]")


# ---- compose files ------------------------------------------------------------------------

# `$$` (a literal `$`), `${...}` or `$NAME`, as docker compose reads them
_COMPOSE_REF = re.compile(
    r"\$(?:(?P<escape>\$)|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_COMPOSE_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>.*))?",
                           re.S)


@dataclass(frozen=True)
class Reference:
    name: str
    op: str | None  # None, "-", ":-" (default), "?", ":?" (required, with a message)
    arg: str


def references(text: str) -> list[Reference]:
    found = []
    for match in _COMPOSE_REF.finditer(text):
        if match.group("escape"):
            continue
        if match.group("bare"):
            found.append(Reference(match.group("bare"), None, ""))
            continue
        body = _COMPOSE_BODY.fullmatch(match.group("braced"))
        assert body, f"not a compose variable reference: {match.group(0)!r}"
        found.append(Reference(body.group("name"), body.group("op"), body.group("arg") or ""))
    return found


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """``value`` with compose's interpolation applied to every string in it."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group("escape"):
            return "$"
        if match.group("bare"):
            return variables.get(match.group("bare"), "")
        body = _COMPOSE_BODY.fullmatch(match.group("braced"))
        name, op, arg = body.group("name", "op", "arg")
        current = variables.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else current
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise AssertionError(f"compose would refuse to start: {name}: {arg}")
        return current or ""

    return _COMPOSE_REF.sub(replace, value)


def env_example() -> tuple[dict[str, str], set[str]]:
    """docker/.env.example: the variables it sets, and those it only mentions (comments)."""
    values, mentioned = {}, set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        match = re.fullmatch(r"(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if match:
            mentioned.add(match.group(2))
            if not match.group(1):
                values[match.group(2)] = match.group(3)
    return values, mentioned


def readme_variables() -> set[str]:
    """Variables in the first column of docker/README.md's tables."""
    names = set()
    for line in README.read_text().splitlines():
        cell = re.match(r"\|\s*([^|]+)\|", line)
        if cell:
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", cell.group(1)))
    return names


def compose_variables(**overrides: str) -> dict[str, str]:
    """What compose would read: docker/.env copied from .env.example, plus overrides."""
    values, _ = env_example()
    return {**values, **overrides}


def load_compose(kind: str) -> dict[str, Any]:
    return yaml.safe_load(COMPOSE[kind].read_text())


def plait_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the plait image (built from docker/Dockerfile)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def container_env(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in interpolate(service.get("environment") or {}, variables).items()}


def argv(service: dict[str, Any]) -> list[str]:
    """The command line a service's container runs (its entrypoint plus its command)."""
    def words(value: Any) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]

    default_entry, default_cmd = (image_entrypoint(), image_cmd()) if "build" in service else ([], [])
    entry = words(service["entrypoint"]) if "entrypoint" in service else default_entry
    cmd = words(service["command"]) if "command" in service else default_cmd
    return entry + cmd


def bind_mounts(kind: str, service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE[kind].parent / source).resolve()
    return mounts


# ---- the Dockerfile -----------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # -1 before the first FROM


def instructions() -> list[Instruction]:
    result, stage, pending = [], -1, ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines
        pending += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, " ".join(args.split()), stage))
        pending = ""
    return result


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for ins in instructions():
        if ins.stage >= 0:
            if ins.stage == len(found):
                found.append([])
            found[ins.stage].append(ins)
    return found


def build_args() -> dict[str, str]:
    """Every ARG with its default (later declarations of the same name agree here)."""
    args = {}
    for ins in instructions():
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args[name] = default
    return args


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)),
                  text)


def final_stage() -> list[Instruction]:
    return stages()[-1]


def final(keyword: str) -> list[Instruction]:
    return [ins for ins in final_stage() if ins.keyword == keyword]


def image_entrypoint() -> list[str]:
    return json.loads(final("ENTRYPOINT")[-1].args)


def image_cmd() -> list[str]:
    return json.loads(final("CMD")[-1].args)


def image_env() -> dict[str, str]:
    env = {}
    for ins in final("ENV"):
        for pair in shlex.split(ins.args):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def image_paths() -> dict[str, Path]:
    """Container folder -> host folder for what the final stage copies from the context."""
    paths = {}
    for ins in final("COPY"):
        if "--from=" in ins.args:
            continue
        *sources, target = [w for w in ins.args.split() if not w.startswith("--")]
        for source in sources:
            paths[target.rstrip("/")] = ROOT / substitute(source, build_args()).rstrip("/")
    return paths


def workspace_members() -> set[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]["name"]
            for member in root["tool"]["uv"]["workspace"]["members"]}


# ---- static checks: compose ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(COMPOSE))
def test_compose_file_parses_and_every_reference_exists(kind):
    compose = load_compose(kind)
    extra = {key for key in compose if not key.startswith("x-")} - {"name", "services", "volumes"}
    assert not extra, f"unexpected top-level keys {sorted(extra)}"
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    arg_names = set(build_args())
    for name, svc in services.items():
        assert set(svc) <= SERVICE_KEYS, f"{name}: unknown keys {sorted(set(svc) - SERVICE_KEYS)}"
        assert "image" in svc or "build" in svc, f"{name}: neither image nor build"
        if "build" in svc:
            context = (COMPOSE[kind].parent / svc["build"]["context"]).resolve()
            assert context == ROOT, f"{name}: build context {context} is not the repository"
            assert (context / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
            for arg, value in svc["build"].get("args", {}).items():
                assert arg in arg_names, f"{name}: the Dockerfile has no ARG {arg}"
                assert interpolate(value, compose_variables()) == build_args()[arg], (
                    f"{name}: by default, compose must build what the Dockerfile builds")
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert spec["condition"] in DEPENDS_CONDITIONS, f"{name}: {spec}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health check"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE[kind].parent / source).exists(), f"{name}: no {source}"
            else:
                assert source in declared_volumes, f"{name}: volume {source!r} not declared"
        for port in svc.get("ports", []):
            assert interpolate(port, compose_variables()).startswith("127.0.0.1:"), \
                f"{name}: port {port} must bind to loopback only"
        if "healthcheck" in svc:
            assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    images = {json.dumps([svc["image"], svc["build"]], sort_keys=True)
              for svc in plait_services(compose).values()}
    assert len(images) == 1, "every plait service must run the one image built from docker/"


@pytest.mark.parametrize("kind", sorted(COMPOSE))
def test_every_compose_variable_is_documented_and_provided(kind):
    documented = readme_variables()
    provided, mentioned = env_example()
    for ref in references(COMPOSE[kind].read_text()):
        assert ref.name in documented, f"${{{ref.name}}} is not in docker/README.md's tables"
        if ref.op in (None, "?", ":?"):
            assert ref.name in provided, (
                f"${{{ref.name}}} has no default in {COMPOSE[kind].name}: set it in .env.example")
        else:
            assert ref.name in provided or ref.name in mentioned, (
                f"${{{ref.name}:-...}}: list it (commented, with its default) in .env.example")
    # compose accepts the files with nothing but .env (copied from .env.example)
    interpolate(load_compose(kind), compose_variables())


@pytest.mark.parametrize("kind", sorted(COMPOSE))
def test_container_environment_is_documented_and_holds_no_literal_secrets(kind):
    compose = load_compose(kind)
    documented = readme_variables()
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if name in plait_services(compose):
                assert key in documented, f"{name}: {key} is not in docker/README.md's tables"
            if SECRET_NAME.search(key) and key != "AWS_DEFAULT_REGION":
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), (
                    f"{name}: {key} must come from the environment (${{{key}:?...}}), "
                    "never a value in the compose file")
    assert set(image_env()) <= documented | {"PYTHONPATH", "PYTHONUNBUFFERED",
                                             "PYTHONDONTWRITEBYTECODE"}
    envs = [container_env(svc, compose_variables()) for svc in plait_services(compose).values()]
    assert all(env == envs[0] for env in envs), "plait containers must share one environment"


def test_env_example_has_dummy_values_only_and_env_is_not_committed():
    values, _ = env_example()
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(values)
    for name, value in values.items():
        assert not re.search(r"(AKIA|ASIA)[0-9A-Z]{16}", value), f"{name} looks like a real key"
    assert len(values["AWS_SECRET_ACCESS_KEY"]) >= 8, "MinIO needs a root password of 8+ chars"
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_readme_commands_name_existing_files_and_services():
    text = README.read_text()
    commands = re.findall(r"docker compose -f (\S+)((?: [^\n]*)?)", text)
    assert {file for file, _ in commands} == {p.name for p in COMPOSE.values()}
    for file, rest in commands:
        kind = next(k for k, p in COMPOSE.items() if p.name == file)
        services = load_compose(kind)["services"]
        for service in re.findall(r"--scale (\S+)=", rest):
            assert service in services, f"README scales unknown service {service} of {file}"
        if re.search(r"\brun --rm (\S+)", rest):
            assert re.search(r"\brun --rm (\S+)", rest).group(1) in services


# ---- static checks: the Dockerfile --------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_non_root_and_installs_only_wheels():
    all_stages = stages()
    args = build_args()
    assert len(all_stages) >= 2, "a builder stage and a final stage"
    bases = [substitute(stage[0].args, args).split()[0] for stage in all_stages]
    assert re.fullmatch(r"python:3\.11-slim", bases[-1]), bases[-1]
    assert any(re.fullmatch(r"python:3\.11-slim", base) for base in bases[:-1]), bases

    users = final("USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), users[-1].args
    assert final_stage().index(users[-1]) > max(
        final_stage().index(i) for i in final_stage() if i.keyword == "RUN"), \
        "USER must come after the last RUN (nothing runs as root at start)"
    assert image_entrypoint() == ["plait"]

    final_text = " ".join(ins.args for ins in final_stage())
    assert not re.search(r"\b(gcc|build-essential|apt-get install)\b", final_text)
    assert not any("--from=" in ins.args for ins in final("COPY")), \
        "the final stage copies nothing from other stages (wheels are bind-mounted)"
    (install,) = [ins.args for ins in final("RUN") if "pip install" in ins.args]
    assert "--mount=type=bind,from=builder" in install and "--no-index" in install
    installed = {re.sub(r"\[.*", "", w.strip('"')) for w in install.split("--no-index")[1].split()
                 if not w.startswith("-") and "/" not in w}
    assert {"plait", "plait-io", "plait-dask", "plait-celery"} <= installed
    assert '"plait-io[s3]"' in install or "plait-io[s3]" in install


def test_dockerfile_holds_no_secrets():
    for ins in instructions():  # comments left out: they may say where credentials come from
        assert "AWS_" not in ins.args, f"{ins.keyword} {ins.args}: no credentials in images"
        if ins.keyword in ("ENV", "ARG", "LABEL"):
            for pair in shlex.split(ins.args):
                name = pair.partition("=")[0]
                assert not SECRET_NAME.search(name), f"{ins.keyword} {name}: no credentials in images"
        if ins.keyword in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|\.aws|credentials", ins.args), ins.args
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text()
    assert "**/.env" in ignored.split()


def test_dockerfile_copies_what_exists_and_is_not_ignored():
    args = build_args()
    patterns = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or
                   fnmatch.fnmatch(prefix, pattern) for prefix in prefixes for pattern in patterns)

    for ins in instructions():
        if ins.keyword != "COPY" or "--from=" in ins.args:
            continue
        *sources, _target = [w for w in ins.args.split() if not w.startswith("--")]
        for source in sources:
            path = substitute(source, args).rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: {ROOT / path} does not exist"
            assert not ignored(path), f"COPY {source}: excluded by Dockerfile.dockerignore"
    env = image_env()
    workdir = final("WORKDIR")[-1].args
    assert image_paths()[workdir] == ROOT / args["PROJECT_DIR"]
    assert env["PYTHONPATH"] == workdir, "the project folder must be importable"


def uv_command() -> list[str]:
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(ROOT / ".tools/uv/bin/uv")):
        if candidate and Path(candidate).exists():
            return [candidate]
    pytest.skip("uv is not installed here (./dev installs it)")


def test_dockerfile_exports_and_builds_the_workspace_packages_the_lock_knows(tmp_path):
    (builder_run,) = [i.args for i in stages()[-2] if i.keyword == "RUN" and "uv export" in i.args]
    export = re.search(r"uv export (.*?)(?:&&|;|$)", builder_run).group(1).split()
    out = export.index("--output-file")
    export[out + 1] = str(tmp_path / "locked.txt")
    proc = subprocess.run([*uv_command(), "export", *export], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    locked = {re.split(r"[=;\s]", line, maxsplit=1)[0].lower()
              for line in (tmp_path / "locked.txt").read_text().splitlines()
              if line and not line.startswith(("#", " "))}
    assert {"dask", "distributed", "celery", "redis", "s3fs", "pydantic", "cloudpickle"} <= locked
    assert "pandas" not in locked and "pytest" not in locked, "only what the image needs"

    members = workspace_members()
    exported = {export[i + 1] for i, word in enumerate(export) if word == "--package"}
    built = set(re.search(r"for member in ([^;]+);", builder_run).group(1).split())
    assert exported == built == {"plait", "plait-io", "plait-dask", "plait-celery"}
    assert built <= members


# ---- static checks: command lines ---------------------------------------------------------


def celery_worker_command() -> click.Command:
    from plait.cli import cli
    from plait_celery.cli import celery

    group = cli.get_command(click.Context(cli), "celery")
    assert group is celery, "`plait celery` must resolve to plait-celery's command group"
    return celery.get_command(click.Context(celery), "worker")


def test_an_unknown_worker_option_fails_to_parse():
    with pytest.raises(click.NoSuchOption):
        celery_worker_command().make_context("worker", ["--queues", "plait", "--no-such-option"])


@pytest.mark.parametrize("kind", sorted(COMPOSE))
def test_plait_command_lines_parse_with_the_plait_cli(kind):
    from plait.cli.run import run

    compose = load_compose(kind)
    worker = celery_worker_command()
    variables = compose_variables()
    kinds = set()
    for name, svc in plait_services(compose).items():
        args = argv(svc)
        if args[0] != "plait":
            continue
        if args[1:3] == ["celery", "worker"]:
            ctx = worker.make_context("worker", args[3:])
            assert ctx.params["queues"], f"{name}: name the queues the worker consumes"
            env = container_env(svc, variables)
            for param in worker.params:  # --broker / --backend come from the environment
                if isinstance(param, click.Option) and param.envvar and param.name in (
                        "broker", "backend"):
                    assert param.envvar in env, f"{name}: {param.envvar} is not set"
            kinds.add("celery worker")
        else:
            assert args[1] == "run", f"{name}: unexpected command {args}"
            run.make_context("run", args[2:])
            kinds.add("run")
    assert kinds == ({"run", "celery worker"} if kind == "celery" else {"run"})


def dask_cli() -> list[str]:
    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dask"]


def dask_help(subcommands: set[str]) -> dict[str, str]:
    """``dask SUB --help`` of the installed CLI for each subcommand (run side by side)."""
    procs = {sub: subprocess.Popen([*dask_cli(), sub, "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for sub in subcommands}
    helps = {}
    for sub, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"dask {sub} --help failed: {err}"
        helps[sub] = out
    return helps


def test_dask_command_lines_use_options_of_the_installed_dask_cli():
    pytest.importorskip("distributed")
    compose = load_compose("dask")
    env = container_env(compose["services"]["run"], compose_variables())
    address = env["PLAIT_DASK_ADDRESS"]
    commands = {name: argv(svc) for name, svc in compose["services"].items()
                if argv(svc)[:1] == ["dask"]}
    helps = dask_help({args[1] for args in commands.values()})
    assert set(helps) == {"scheduler", "worker"}
    for name, args in commands.items():
        sub = args[1]
        known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", helps[sub]))
        options = [a.split("=")[0] for a in args[2:] if a.startswith("-")]
        unknown = [o for o in options if o not in known]
        assert not unknown, f"{name}: `dask {sub}` has no option(s) {unknown}"
        if sub == "worker":
            assert address in args[2:], f"{name}: the worker must join {address}"
        else:
            port = args[args.index("--port") + 1]
            assert name == "scheduler" and address.endswith(f"//scheduler:{port}")


# ---- the example job and its run config ---------------------------------------------------


def container_to_host(path: str, mounts: dict[str, Path]) -> Path:
    for container, host in sorted({**image_paths(), **mounts}.items(), key=lambda kv: -len(kv[0])):
        if path == container or path.startswith(container + "/"):
            return host / path[len(container):].lstrip("/")
    return image_paths()[final("WORKDIR")[-1].args] / path  # relative: the working directory


def load_job_fresh(path: Path) -> Any:
    """``plait.load_job`` of a file, without leaving the module or its folder behind."""
    from plait import load_job

    def forget() -> None:
        for name, module in list(sys.modules.items()):
            if getattr(module, "__file__", None) == str(path.resolve()):
                del sys.modules[name]

    saved = list(sys.path)
    forget()
    try:
        return load_job(str(path))
    finally:
        forget()
        sys.path[:] = saved


@pytest.mark.parametrize("kind", sorted(COMPOSE))
def test_the_run_service_job_loads_and_its_run_config_validates(kind, monkeypatch):
    from plait import load_run_config
    from plait._run.run_config import validate_run_config
    from plait.cli.run import run
    from plait_io import FsspecIOManager

    compose = load_compose(kind)
    service = compose["services"]["run"]
    env = container_env(service, compose_variables())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    params = run.make_context("run", argv(service)[2:]).params
    mounts = bind_mounts(kind, service)
    job_file = container_to_host(params["target"].split(":")[0], mounts)
    assert job_file.is_file(), f"{params['target']} is not in the image ({job_file})"
    configs = [container_to_host(c, mounts) for c in params["configs"]]

    job = load_job_fresh(job_file)
    validated = validate_run_config(job, load_run_config(*configs), job.resources, None)

    assert validated.executor_name == kind
    io = job.resources["io_manager"]
    assert isinstance(io, FsspecIOManager)
    assert io.base_url == env["PLAIT_STORAGE_URL"]
    assert io.storage_options == {"client_kwargs": {"endpoint_url": env["PLAIT_S3_ENDPOINT"]}}
    if kind == "dask":
        assert validated.executor_config["address"] == env["PLAIT_DASK_ADDRESS"]
        return
    config = validated.executor_config
    assert (config["broker"], config["backend"]) == (env["PLAIT_CELERY_BROKER"],
                                                     env["PLAIT_CELERY_BACKEND"])
    # every queue the job sends steps to is consumed by some worker
    worker = celery_worker_command()
    consumed = set()
    for svc in plait_services(compose).values():
        args = argv(svc)
        if args[1:3] == ["celery", "worker"]:
            queues = worker.make_context("worker", args[3:]).params["queues"]
            consumed.update(q for item in queues for q in item.split(","))
    wanted = {config.get("queue", "plait")} | {
        node.op.tags["celery/queue"] for node in job.nodes.values() if "celery/queue" in node.op.tags}
    assert wanted <= consumed, f"queues nobody consumes: {sorted(wanted - consumed)}"
    assert "heavy" in wanted


def test_an_unset_variable_in_a_docker_run_config_names_it(monkeypatch):
    from plait import RunConfigError, load_run_config

    monkeypatch.delenv("PLAIT_DASK_ADDRESS", raising=False)
    with pytest.raises(RunConfigError, match="execution.dask.address: environment variable "
                                             "PLAIT_DASK_ADDRESS is not set"):
        load_run_config(DOCKER / "config" / "dask.yaml")


# ---- rehearsals: the one-shot runs outside containers, on real services -------------------


def host_port(url: str) -> str:
    return url.split("//", 1)[1].rstrip("/")


def rehearsal_env(service_env: dict[str, str], local: dict[str, str], home: Path) -> dict[str, str]:
    """A container's environment on this machine: the image's ENV with its folders mapped
    here, the service's environment with each compose address replaced by ``local[...]``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PLAIT_", "PYTHONPATH", "FORCE_COLOR"))}
    for name, value in image_env().items():
        env[name] = str(image_paths().get(value, value))
    env["PLAIT_HOME"] = str(home)  # the `runs` volume
    for name, value in service_env.items():
        for address, here in local.items():
            value = value.replace(f"//{address}", f"//{here}")
        assert not SERVICE_ADDRESS.search(value), f"{name}={value}: no local stand-in"
        env[name] = value
    env["NO_COLOR"] = "1"
    return env


def plait_cli() -> list[str]:
    script = Path(sys.executable).with_name("plait")
    return [str(script)] if script.exists() else [sys.executable, "-m", "plait.cli"]


def rehearse_run(kind: str, env: dict[str, str]) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Run the `run` service's command line here; return the run id and the process."""
    service = load_compose(kind)["services"]["run"]
    mounts = bind_mounts(kind, service)
    args = [str(container_to_host(a, mounts)) if a.startswith("/") else a
            for a in argv(service)[1:]]
    workdir = image_paths()[final("WORKDIR")[-1].args]
    proc = subprocess.run([*plait_cli(), *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`plait {' '.join(args)}` failed:\n{text}"
    run_id = re.search(r"^Run (\w+) of job crunch_numbers", proc.stdout, re.M).group(1)
    return run_id, proc


def check_outputs(s3_url: Any, run_id: str) -> None:
    fs = s3_url.filesystem()
    prefix = f"{s3_url.bucket}/runs/{run_id}"
    stored = {path.removeprefix(prefix + "/") for path in fs.find(prefix)}
    assert {"partition/result/part_0", "crunch(part_7)/result", "summarize/result",
            "report/result"} <= stored, sorted(stored)
    header, _, body = fs.cat(f"{prefix}/report/result").decode().partition("\n")
    assert header == "plait-io/1 json"
    assert json.loads(body).startswith("sum of squares over 8 partitions: ")


@pytest.mark.services
def test_dask_one_shot_run_rehearsed_on_a_real_cluster(s3_url, dask_cluster_factory, monkeypatch,
                                                       tmp_path):
    compose = load_compose("dask")
    variables = compose_variables(PLAIT_S3_BUCKET=s3_url.bucket)
    minio = {"minio:9000": host_port(s3_url.endpoint_url)}
    worker = compose["services"]["worker"]
    # the worker processes get the worker containers' environment (s3fs reads AWS_* there)
    for name, value in container_env(worker, variables).items():
        monkeypatch.setenv(name, value.replace("//minio:9000", f"//{minio['minio:9000']}"))
    worker_args = argv(worker)
    cluster = dask_cluster_factory(
        n_workers=worker["deploy"]["replicas"],
        threads_per_worker=int(worker_args[worker_args.index("--nthreads") + 1]),
    )
    local = {**minio, "scheduler:8786": host_port(cluster.scheduler_address)}
    env = rehearsal_env(container_env(compose["services"]["run"], variables), local,
                        tmp_path / "home")

    run_id, proc = rehearse_run("dask", env)

    assert "on executor dask" in proc.stdout
    check_outputs(s3_url, run_id)


@pytest.mark.services
def test_celery_one_shot_run_rehearsed_on_real_workers(s3_url, redis_factory, tmp_path):
    pytest.importorskip("plait_celery")
    from plait import Instance
    from plait.events import EventType

    from tests.services.celery_workers import WorkerProcess
    from tests.services.redis import KeyspaceWatch

    compose = load_compose("celery")
    variables = compose_variables(PLAIT_S3_BUCKET=s3_url.bucket)
    redis = redis_factory()
    local = {"minio:9000": host_port(s3_url.endpoint_url), "redis:6379": f"127.0.0.1:{redis.port}"}
    home = tmp_path / "home"
    workdir = image_paths()[final("WORKDIR")[-1].args]
    tag = uuid.uuid4().hex[:6]
    workers: list[WorkerProcess] = []
    try:
        for name, svc in plait_services(compose).items():
            args = argv(svc)
            if args[1:3] != ["celery", "worker"]:
                continue
            env = rehearsal_env(container_env(svc, variables), local, home)
            hostname = f"{name}-{tag}@rehearsal"  # containers differ by host name; here by -n
            ready = KeyspaceWatch(env["PLAIT_CELERY_BACKEND"], f"plait:worker:{hostname}")
            log_path = tmp_path / f"{name}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([*plait_cli(), *args[1:], "-n", hostname], cwd=workdir,
                                        env=env, stdout=log, stderr=subprocess.STDOUT)
            workers.append(WorkerProcess(hostname, [], proc, log_path, ready))
        for worker in workers:
            worker.wait_ready()
        env = rehearsal_env(container_env(compose["services"]["run"], variables), local, home)

        run_id, proc = rehearse_run("celery", env)

        assert "on executor celery" in proc.stdout
        check_outputs(s3_url, run_id)
        with Instance(home) as instance:
            starts = instance.storage.get_events(run_id, event_types=[EventType.STEP_START])
        ran_on = {e.step_key: e.data["worker"].split("-" + tag)[0] for e in starts}
        assert ran_on["report"] == "worker-heavy", ran_on  # the `heavy` queue
    finally:
        for worker in workers:
            worker.stop()
