"""bandit on the service's code (config and justified skips in pyproject.toml) and pip-audit on
the installed dependencies. Both run in every `./run test`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICE_CODE = ["fairvalue", "api", "models", "storage", "tasks", "beat_schedule.py"]


def test_bandit_finds_nothing_unjustified():
    result = subprocess.run(
        [str(BIN / "bandit"), "-q", "-c", "pyproject.toml", "-r", *SERVICE_CODE, "-f", "custom",
         "--msg-template", "{relpath}:{line} {test_id} [{severity}] {msg}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"bandit findings (fix, or justify with `# nosec BXXX` and a comment):\n" \
                                   f"{result.stdout}{result.stderr}"


def test_pip_audit_finds_no_known_vulnerability():
    """Every installed distribution is looked up in the registry's vulnerability data. A known
    vulnerability fails the test (bump the pin in pyproject.toml). Distributions the registry
    does not list (local builds) are skipped by pip-audit and named in the output."""
    result = subprocess.run(
        [str(BIN / "pip-audit"), "--progress-spinner", "off", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert result.stdout.strip(), f"pip-audit did not run:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    vulnerable = {d["name"]: [v["id"] for v in d.get("vulns", [])] for d in report["dependencies"] if d.get("vulns")}
    skipped = [d["name"] for d in report["dependencies"] if "skip_reason" in d]
    print(f"pip-audit: {len(report['dependencies']) - len(skipped)} audited, {len(skipped)} not in the registry")
    assert not vulnerable, f"known vulnerabilities: {vulnerable}"
    assert result.returncode == 0, result.stderr[-3000:]
