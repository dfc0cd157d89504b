"""The forward windows of the cards after a gap in their prices, on real parts: the bundled prices
end 2025-07-19 and a collector's first run stores one price per card dated today. `fairvalue train`
reported its holdout with n=0 and a training request was rejected by the gates with "eval_n (0
usable sales ...)": both windows were the last calendar days, which held only today. They are the
last priced days now (models.daily.last_priced_days_start), and the gates name card-day prices.

Each test loads the card universe into a collection of its own (cardswin-*), so it neither sees
nor changes the collections of the other cards tests. Named to run after the other integration
tests, as test_trading_cards_review.py is: it registers model versions and decisions."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from fairvalue import lifecycle
from fairvalue.cli import app as cli
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.tables import ModelVersion, PromotionDecision
from tests.integration.test_trading_cards_review import PRICES, cards_collection

pytestmark = pytest.mark.integration
runner = CliRunner()


def gapped_prices() -> pd.DataFrame:
    """The bundled prices, then each card's last price again on 2026-12-01 (500 days later)."""
    fixture = pd.read_csv(PRICES, dtype=str)
    return pd.concat([fixture, fixture.groupby("card_id").tail(1).assign(date="2026-12-01")])


def test_train_after_a_gap_scores_a_holdout(database, s3, tmp_path):
    cards_collection("cardswin-train", gapped_prices(), tmp_path)
    result = runner.invoke(cli, ["train", "--collection", "cardswin-train"])
    assert result.exit_code == 0, result.output
    with session_scope() as session:
        coll = ensure_collection(session, "cardswin-train")
        metrics = session.exec(select(ModelVersion.metrics).where(ModelVersion.collection_id == coll.id)).one()
    # The last 31 priced days: 30 bundled days and 2026-12-01 (no card has a fair value on it yet).
    assert metrics["holdout_start"] == "2025-06-20T00:00:00Z"
    assert metrics["model"]["n"] > 1000 and metrics["model"]["mape"] < 0.1


def test_a_training_request_after_a_gap_is_gated_on_card_days(database, s3, tmp_path):
    settings = cards_collection("cardswin-gate", gapped_prices(), tmp_path)
    request_id = lifecycle.record_request(settings, f"cardswin-gate:{time.time_ns()}", "drift", {}, {}).request_id
    outcome = lifecycle.train_request(request_id, "worker-gap", settings)
    with session_scope() as session:
        decision = session.exec(select(PromotionDecision).where(
            PromotionDecision.training_request_id == request_id)).one()
    checks = {c["name"]: c for c in decision.numbers["checks"]}
    assert checks["eval_n"]["passed"], decision.reason
    n = checks["eval_n"]["value"]
    assert n == decision.numbers["window"]["n_card_days"] > 0
    assert checks["eval_n"]["detail"] == f"{n} usable card-day prices in the evaluation window"
    # The last 14 priced days: 13 bundled days and 2026-12-01.
    assert decision.numbers["window"]["from"] == "2025-07-07T00:00:00Z"
    assert decision.numbers["window"]["to"] == "2026-12-01T00:00:00Z"
    assert outcome["decision"] == decision.decision == "promote", decision.reason  # no champion yet
