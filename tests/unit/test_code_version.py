"""The code version a model version records is the commit the process loaded, not the checkout's now."""

from __future__ import annotations

import subprocess

from fairvalue import pipeline
from fairvalue.settings import get_settings


def test_a_commit_made_while_the_process_runs_is_not_recorded_as_its_code(monkeypatch):
    heads = iter(["aaaaaaa\n", "bbbbbbb\n"])

    def git(args, **kwargs):  # the checkout moves on between the two trainings
        return subprocess.CompletedProcess(args, 0, stdout=next(heads), stderr="")

    monkeypatch.setattr(pipeline.subprocess, "run", git)
    monkeypatch.setattr(get_settings(), "code_version", "")
    pipeline._loaded_commit.cache_clear()
    try:
        assert [pipeline.code_version(), pipeline.code_version()] == ["aaaaaaa", "aaaaaaa"]
        monkeypatch.setattr(get_settings(), "code_version", "v1.2.3")  # FAIRVALUE_CODE_VERSION wins
        assert pipeline.code_version() == "v1.2.3"
    finally:
        pipeline._loaded_commit.cache_clear()
