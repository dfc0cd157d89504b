"""Secrets come only from the environment: on real servers the API refuses to start with the
development webhook secret (or none), unless FAIRVALUE_DEV_MODE says this is a dev machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from fairvalue.settings import DEV_WEBHOOK_SECRET, Settings

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg://fairvalue@db.example:5432/fairvalue"


def test_which_configurations_are_refused(monkeypatch):
    monkeypatch.delenv("FAIRVALUE_WEBHOOK_SECRET")  # the test session's own secret
    assert Settings(database_url=PG, _env_file=None).insecure_secrets()  # default secret, real database
    assert Settings(database_url=PG, webhook_secret=SecretStr(""), _env_file=None).insecure_secrets()
    assert not Settings(database_url=PG, webhook_secret=SecretStr("r4nd0m-and-long"), _env_file=None).insecure_secrets()
    assert not Settings(database_url=PG, dev_mode=True, _env_file=None).insecure_secrets()
    assert not Settings(database_url="", _env_file=None).insecure_secrets()  # embedded: SQLite, `fairvalue up`


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UVICORN = [sys.executable, "-m", "uvicorn", "api.app:app", "--lifespan", "on", "--port"]
FAIRVALUE_API = [sys.executable, "-m", "fairvalue.cli", "api", "--port"]


def _serve(env_update: dict, command: list[str] = UVICORN) -> subprocess.CompletedProcess | None:
    env = {k: v for k, v in os.environ.items() if k != "FAIRVALUE_WEBHOOK_SECRET"}
    env.update(FAIRVALUE_DATABASE_URL=PG, **env_update)
    proc = subprocess.Popen(
        [*command, str(_free_port())],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        out, _ = proc.communicate(timeout=20)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out)
    except subprocess.TimeoutExpired:  # it is serving
        proc.terminate()
        proc.communicate(timeout=10)
        return None


def test_the_api_process_refuses_the_development_secret():
    refused = _serve({"FAIRVALUE_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET})
    assert refused is not None and refused.returncode != 0
    assert "refusing to start" in refused.stdout and "FAIRVALUE_WEBHOOK_SECRET" in refused.stdout
    assert DEV_WEBHOOK_SECRET not in refused.stdout  # the reason names the variable, never echoes a secret


def test_fairvalue_api_refuses_it_in_one_line_before_uvicorn_starts():
    """It used to be refused by the app's startup, which uvicorn prints as a traceback (exit 3)."""
    refused = _serve({"FAIRVALUE_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET}, FAIRVALUE_API)
    assert refused is not None and refused.returncode == 2, refused
    said = " ".join(refused.stdout.split())
    assert said.startswith("refusing to start: FAIRVALUE_WEBHOOK_SECRET is unset or the development value")
    assert "Traceback" not in refused.stdout and DEV_WEBHOOK_SECRET not in refused.stdout
