"""Imports point down: storage/ is beneath fairvalue/ (the jobs and reads call it), so it takes
nothing from fairvalue/ but the settings, the one place every package reads them from. And the
`fairvalue` command is a package that `python -m fairvalue.cli` runs, as `fairvalue up` starts
its API process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    """Every module a file imports, `from fairvalue import x` read as fairvalue.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" for a in node.names) if node.module == "fairvalue" \
                else found.add(node.module)
    return found


def test_storage_imports_nothing_of_fairvalue_but_its_settings():
    offending = sorted(f"{path.relative_to(ROOT)}: {module}"
                       for path in (ROOT / "storage").rglob("*.py")
                       for module in _imported(path)
                       if module.split(".")[0] == "fairvalue" and module != "fairvalue.settings")
    assert not offending


def test_python_dash_m_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "fairvalue.cli", "--help"], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "COLUMNS": "120"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage: python -m fairvalue.cli [OPTIONS] COMMAND [ARGS]..." in out.stdout
    assert "replay" in out.stdout and "tokens" in out.stdout
