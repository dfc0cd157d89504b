"""Options and settings refused out of their range before any work, and the width of what the CLI
prints when stdout is not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from fairvalue.cli import app
from fairvalue.settings import Settings


@pytest.mark.parametrize("days", ["0", "-5", "3651"])
def test_cards_collect_days_out_of_range_is_refused(days):
    """-5 was sent to the price API for every card; 0 silently meant the default, 30."""
    refused = CliRunner().invoke(app, ["cards", "collect", "--days", days])
    assert refused.exit_code == 2 and "Invalid value for '--days'" in refused.output, refused.output


@pytest.mark.parametrize(("name", "value"), [("card_price_history_days", 0), ("api_port", 0), ("api_port", 65536)])
def test_settings_out_of_range_are_refused(name, value):
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})


def test_piped_output_is_not_cut_at_80_columns_unless_columns_says_so():
    """`fairvalue replay … > file` printed "MAPE 14.6…": rich gives a non-terminal 80 columns."""
    probe = [sys.executable, "-c", "from fairvalue.cli.common import console; print(console.width)"]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    assert subprocess.run(probe, capture_output=True, text=True, env=env, check=True).stdout.strip() == "200"
    narrow = subprocess.run(probe, capture_output=True, text=True, env={**env, "COLUMNS": "100"}, check=True)
    assert narrow.stdout.strip() == "100"


@pytest.mark.parametrize("version", ["0", "9999999999", "99999999999999999999999"])
def test_promote_of_a_version_no_model_can_have_is_refused_before_any_work(version):
    """A version past the versions' INTEGER column was looked up in the database: its refusal
    (integer out of range) came out as a traceback, where the API's promote answers 400."""
    refused = CliRunner().invoke(app, ["promote", version])
    assert refused.exit_code == 2 and "Invalid value for VERSION" in refused.output, refused.output


def test_a_training_parameter_json_cannot_read_is_kept_as_its_text():
    """`retrain --param max_iter=<5,000 digits>`: json.loads' ValueError (past Python's 4,300
    digits) was a traceback; the text goes on to check_training_params, which names the parameter."""
    from fairvalue.cli.training import _parse_params

    digits = "9" * 5000
    assert _parse_params([f"max_iter={digits}", "max_iter2=300", "band_method=spread"]) == {
        "max_iter": digits, "max_iter2": 300, "band_method": "spread"}
