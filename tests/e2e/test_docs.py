"""The examples in the README and docs/ run as written.

Every ```python block of a file runs, in order, in one fresh interpreter (like a reader
pasting them into one session), in a temporary working directory. A block that needs a
service the test environment does not provide is fenced ```python skip instead.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d)], ids=lambda p: p.name)
def test_examples_run(doc: Path, tmp_path: Path) -> None:
    script = "\n\n".join(python_blocks(doc))
    (tmp_path / "examples.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, "examples.py"], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, f"{doc.name} examples failed:\n{proc.stdout}\n{proc.stderr}"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```(?:bash|sh)\n(.*?)```", section, re.S)
    assert block, "the Quick start section must open with a shell code block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./dev demo", "./dev test"]
