"""A fat-fingered card price is refused and kept as implausible_price by both ways prices come in,
`ingest prices` (a file) and `cards collect` (the price API), on real parts: each is judged against
the card's recent stored prices (fairvalue.card_prices.validate_against_stored). A 300 for a card
trading at 2,000 was stored and moved a backtest from -22 % to -55 %.

The test loads the card universe into a collection of its own (cardsjump)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import pandas as pd
import pytest
from sqlmodel import select

from fairvalue import card_prices
from fairvalue.card_universe import load_universe, read_universe
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.tables import DailyPrice, RejectedSale

pytestmark = pytest.mark.integration
SLUG = "cardsjump"
CARD = "base1-4-charizard-holo"
DAY = date(2025, 7, 10)


@dataclass
class OneDayAPI:
    """Stands in for PriceTrackerClient: every card's answer is one price of `day`."""
    price: float
    day: date
    base_url: str = "stub"
    waits: list[float] = field(default_factory=list)

    def card(self, tcg_player_id: str, days: int):
        return {"data": [{"priceHistory": {self.day.isoformat(): self.price}}]}


def stored(card: str) -> tuple[dict[date, float], list[tuple[str, dict]]]:
    with session_scope() as session:
        coll = ensure_collection(session, SLUG)
        prices = dict(session.exec(select(DailyPrice.day, DailyPrice.price).where(
            DailyPrice.collection_id == coll.id, DailyPrice.item_key == card)).all())
        refused = session.exec(select(RejectedSale.reason, RejectedSale.row)
                               .where(RejectedSale.collection_id == coll.id)
                               .order_by(RejectedSale.id)).all()
        return {d: float(p) for d, p in prices.items()}, [tuple(r) for r in refused]


def test_file_ingest_and_collect_refuse_an_implausible_price_alike(database, tmp_path):
    load_universe(replace(read_universe(get_settings().cards_config), collection=SLUG))
    settings = get_settings().for_collection(SLUG)
    history = tmp_path / "history.csv"
    days = [DAY - timedelta(days=i) for i in range(1, 8)]
    pd.DataFrame({"date": [d.isoformat() for d in days], "card_id": CARD,
                  "market_price": [2000 + 10 * i for i in range(7)]}).to_csv(history, index=False)
    assert card_prices.ingest_prices_file(history, settings).new == 7

    typo = tmp_path / "typo.csv"
    pd.DataFrame({"date": [DAY.isoformat()], "card_id": [CARD], "market_price": ["300"]}).to_csv(typo, index=False)
    report = card_prices.ingest_prices_file(typo, settings)
    assert (report.new, report.rejected, dict(report.reasons)) == (0, 1, {"implausible_price": 1})
    prices, refused = stored(CARD)
    assert DAY not in prices and refused == [("implausible_price",
                                              {"date": DAY.isoformat(), "card_id": CARD, "market_price": "300"})]

    collected = card_prices.collect(settings, client=OneDayAPI(300.0, DAY), today=DAY + timedelta(days=1))
    # the other 39 cards have no stored price: not checked, stored; the charizard's 300 is refused
    assert (collected.prices.new, collected.prices.rejected, dict(collected.prices.reasons)) == (
        39, 1, {"implausible_price": 1})
    prices, refused = stored(CARD)
    assert DAY not in prices and refused[-1] == ("implausible_price",
                                                 {"date": DAY.isoformat(), "card_id": CARD, "market_price": 300.0})

    plausible = card_prices.collect(settings, client=OneDayAPI(2100.0, DAY), today=DAY + timedelta(days=1))
    assert plausible.prices.rejected == 0 and stored(CARD)[0][DAY] == 2100.0
