"""Bad input: one paragraph that says what is wrong, exit code 2, and never a traceback."""

from __future__ import annotations

import importlib.util

import pytest

from tests.cli.conftest import Project, output

FILES = {
    "bad.yaml": "ops:\n  load: {config: {a: 1}\n  x: [\n",
    "wrong.yaml": """
        foo: 1
        ops:
          nope: {config: {}}
          total:
            config: {x: 1}
        resources:
          db: {}
        execution:
          in_process:
            workers: 3
    """,
    "list.yaml": "- just\n- a list\n",
    "raises.py": """
        from plait import job, op

        def connect():
            raise RuntimeError("cannot reach the warehouse")

        CLIENT = connect()
    """,
    "badop.py": """
        from plait import job, op

        @op
        def a(x) -> int:
            return 1

        @job
        def broken():
            a(a)
    """,
    "syntax.py": "from plait import job\ndef oops(:\n    pass\n",
    "needs_dep.py": "import not_installed_dependency_xyz\n",
    "nojobs.py": "X = 1\n",
}


@pytest.fixture
def bad_project(project: Project) -> Project:
    for name, text in FILES.items():
        project.write(name, text)
    return project


CASES = {
    "missing file": (["run", "nope.py"], ["no such file: 'nope.py'"]),
    "missing module": (["run", "no_such_pkg.jobs"], ["no module named 'no_such_pkg.jobs'"]),
    "unknown job": (["run", "jobs.py:nope"], ["has no attribute 'nope'", "failing", "flaky", "ok"]),
    "several jobs": (["run", "jobs.py"], ["defines 3 jobs (failing, flaky, ok)", "jobs.py:JOB"]),
    "no jobs": (["run", "nojobs.py"], ["defines 0 jobs"]),
    "invalid yaml": (["run", "jobs.py:ok", "-c", "bad.yaml"], ["bad.yaml at line 3", "invalid YAML"]),
    "yaml not a mapping": (["run", "jobs.py:ok", "-c", "list.yaml"], ["must be a mapping"]),
    "missing config file": (["run", "jobs.py:ok", "-c", "absent.yaml"], ["absent.yaml"]),
    "run config errors": (
        ["run", "jobs.py:ok", "-c", "wrong.yaml"],
        ["5 problem(s)", "foo: unknown top-level key", "ops.nope: no op 'nope'",
         "ops.total.config: op 'total' takes no config", "resources.db: no resource 'db'",
         "execution.in_process.workers"],
    ),
    "unknown op in --select": (["run", "jobs.py:ok", "--select", "nope"], ["op_selection: no op 'nope'"]),
    "unknown executor": (
        ["run", "jobs.py:ok", "--executor", "sparky"],
        ["unknown executor 'sparky'", "known executors:", "in_process", "plait.executors"],
    ),
    "op raises at import": (
        ["run", "raises.py"],
        ["cannot load 'raises.py'", "RuntimeError: cannot reach the warehouse", "raises.py, line 5"],
    ),
    "definition error at import": (
        ["run", "badop.py"], ["cannot load 'badop.py'", "input 'x' of op 'a'", "badop.py, line 10"],
    ),
    "syntax error": (["run", "syntax.py"], ["syntax error in", "syntax.py, line 2"]),
    "missing dependency": (
        ["run", "needs_dep.py"], ["No module named 'not_installed_dependency_xyz'", "needs_dep.py, line 1"],
    ),
    "jobs list of a missing file": (["jobs", "list", "gone.py"], ["no such file: 'gone.py'"]),
    "unknown run id (show)": (["runs", "show", "deadbeef"], ["no run 'deadbeef'", "plait runs list"]),
    "unknown run id (reexecute)": (
        ["runs", "reexecute", "deadbeef", "--from-failure"], ["no run 'deadbeef'"],
    ),
    "malformed tag": (["run", "jobs.py:ok", "--tag", "novalue"], ["expected KEY=VALUE"]),
    "unknown status": (["runs", "list", "--status", "DONE"], ["'DONE' is not one of"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_paragraph_without_traceback(bad_project: Project, case: str) -> None:
    args, fragments = CASES[case]
    result = bad_project.plait(*args)
    text = output(result)
    assert result.returncode == 2, text
    assert "Error:" in result.stderr, text
    assert "Traceback" not in text
    flat = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in flat, text
    assert "Run " not in result.stdout  # no run was started


def test_plait_traceback_env_shows_the_traceback_for_debugging(bad_project: Project) -> None:
    result = bad_project.plait("run", "raises.py", env={"PLAIT_TRACEBACK": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "cannot reach the warehouse" in result.stderr


def test_an_executor_whose_package_is_missing_says_what_to_install(project: Project) -> None:
    """A real entry point (a dist-info folder on PYTHONPATH) whose module is not installed."""
    dist = project.path / "site" / "plait_ghost-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plait-ghost\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[plait.executors]\nghost = plait_ghost.executor:GhostExecutor\n")
    result = project.plait("run", "jobs.py:ok", "--executor", "ghost",
                           env={"PYTHONPATH": str(project.path / "site")})
    assert result.returncode == 2, output(result)
    assert "executor 'ghost'" in result.stderr
    assert "plait_ghost" in result.stderr
    assert "install" in result.stderr.lower()  # the hint: what to install
    assert "Traceback" not in output(result)


@pytest.mark.skipif(importlib.util.find_spec("plait_dask") is not None,
                    reason="plait-dask is installed here; the hint shows where only plait is "
                    "(CI's core-only environment runs this)")
def test_a_known_executor_whose_plugin_is_not_installed_names_the_package(project: Project) -> None:
    result = project.plait("run", "jobs.py:ok", "--executor", "dask")
    assert result.returncode == 2, output(result)
    assert "pip install plait-dask" in result.stderr
    assert "Traceback" not in output(result)
