"""A review of the cards, on real parts: a replay window whose training has too few card-days to
tune on, a training window too short for any training, and a collector run that collected
nothing. Each was a traceback, a 500, a request queued to fail, or an exit 0; each is now refused
with its reason (the rules: tests/unit/test_daily_review_refusals.py).

Each test loads the card universe into a collection of its own (cardsref-*), so it neither sees
nor changes the collections of the other cards tests; none trains or registers a model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlmodel import func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from fairvalue.cli import app as cli
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.tables import TrainingRequest
from tests.integration.test_trading_cards_review import cards_collection, said

pytestmark = pytest.mark.integration
runner = CliRunner()


def two_cards_for_30_days() -> pd.DataFrame:
    """Two cards priced daily 2025-01-01..01-30 (/tmp/review_cards/small.csv): 14 priced days before
    2025-01-15, but far fewer than the 50 card-days with a fair value training tunes on."""
    days = pd.date_range("2025-01-01", periods=30, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame({"date": [d for d in days for _ in range(2)],
                         "card_id": ["base1-4-charizard-holo", "base1-2-blastoise-holo"] * 30,
                         "market_price": [p for k in range(30) for p in (1000.0 + 5 * k, 2000.0 + 10 * k)]})


def test_a_window_whose_training_cannot_tune_is_a_400_and_a_bad_from(database, s3, tmp_path):
    """TooFewPrices escaped the replay: a 500 from /performance and /backtest, a traceback (exit 1)
    from `replay` and `backtest`."""
    from api.app import create_app

    cards_collection("cardsref-two", two_cards_for_30_days(), tmp_path)
    why = ("not enough prices before the window to train a model: the model of 2025-01-20, trained on the days "
           "before it: too few card-days with a fair value in the last 60 priced days to tune on")
    api = TestClient(create_app(), raise_server_exceptions=False)
    for read in ("performance", "backtest"):
        answer = api.get(f"/v1/collections/cardsref-two/{read}?from=2025-01-20&to=2025-01-30")
        assert answer.status_code == 400 and answer.json()["error"].startswith(why), (read, answer.text)
    for command in ("replay", "backtest"):
        result = runner.invoke(cli, [command, "--collection", "cardsref-two", "--source", "db",
                                     "--from", "2025-01-20", "--to", "2025-01-30"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"Invalid value for --from: {why}" in said(result.output.replace("│", " ")), result.output


def test_retrain_with_a_window_too_short_to_train_is_refused_and_queues_nothing(database, s3, tmp_path):
    """`retrain --param 'windows=[2]'` was queued, then every training attempt failed."""
    cards_collection("cardsref-window", None, tmp_path)
    for windows in ("[2]", "[1]", "[7,2]"):
        result = runner.invoke(cli, ["retrain", "--collection", "cardsref-window", "--reason", "short window",
                                     "--param", f"windows={windows}"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "Invalid value for --param: windows." in said(result.output.replace("│", " ")), result.output
        assert "too short: a window of fewer than 3 days cannot hold the 3 prices a card's median needs" in said(
            result.output.replace("│", " ")), result.output
    with session_scope() as session:
        coll = ensure_collection(session, "cardsref-window")
        assert session.exec(select(func.count()).select_from(TrainingRequest).where(
            TrainingRequest.collection_id == coll.id)).one() == 0


def test_cards_collect_without_an_api_key_exits_1_with_its_report(database, s3, tmp_path, monkeypatch):
    """It printed `"skipped": "no FAIRVALUE_CARD_PRICE_API_KEY configured"` and exited 0."""
    cards_collection("cardsref-nokey", None, tmp_path)
    monkeypatch.setattr(get_settings(), "card_price_api_key", SecretStr(""))
    result = runner.invoke(cli, ["cards", "collect", "--collection", "cardsref-nokey", "--days", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    answer = json.loads(result.stdout)  # the report, on stdout as before
    assert answer["skipped"] == "no FAIRVALUE_CARD_PRICE_API_KEY configured" and answer["follow_up"] == "none"
    assert said(result.stderr) == "nothing collected: no FAIRVALUE_CARD_PRICE_API_KEY configured"
