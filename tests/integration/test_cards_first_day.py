"""A card price dated before the market existed is refused and kept, on real parts: `cards load`
stores the universe's `first_day:` with the collection (config/cards.yaml: 1999-01-09, the Pokémon
TCG Base Set's US release) and `ingest prices` refuses a price before it as `before_collection`,
keeping the row with its reason as every refused row is kept. A price of 1990-01-01 was stored.

Each test loads the card universe into a collection of its own (cardsfirst-*)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pandas as pd
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from fairvalue import card_prices
from fairvalue.card_universe import load_universe, read_universe
from fairvalue.cli import app as cli
from fairvalue.settings import get_settings
from storage.db import session_scope
from storage.ingest import ensure_collection
from storage.tables import Collection, DailyPrice, RejectedSale

pytestmark = pytest.mark.integration
runner = CliRunner()
CARD = "base1-4-charizard-holo"


def stored(slug: str) -> tuple[date | None, list[date], list[tuple[str, str, dict]]]:
    """(the collection's first day, its priced days, its refused rows: reason, detail, row)."""
    with session_scope() as session:
        coll = ensure_collection(session, slug)
        days = session.exec(select(DailyPrice.day).where(DailyPrice.collection_id == coll.id)
                            .order_by(DailyPrice.day)).all()
        refused = session.exec(select(RejectedSale.reason, RejectedSale.detail, RejectedSale.row)
                               .where(RejectedSale.collection_id == coll.id).order_by(RejectedSale.detail)).all()
        return coll.first_day, list(days), [tuple(r) for r in refused]


def test_a_price_before_the_markets_first_day_is_refused_and_kept(database, tmp_path):
    universe = replace(read_universe(get_settings().cards_config), collection="cardsfirst-ingest")
    loaded = load_universe(universe)
    assert (loaded.first_day, loaded.first_day_changed) == (date(1999, 1, 9), True)
    assert load_universe(universe).first_day_changed is False  # a second load changes nothing

    path = tmp_path / "first-day.csv"
    pd.DataFrame({"date": ["1990-01-01", "1999-01-08", "1999-01-09"], "card_id": CARD,
                  "market_price": ["10.0", "11.0", "12.0"]}).to_csv(path, index=False)
    settings = get_settings().for_collection("cardsfirst-ingest")
    report = card_prices.ingest_prices_file(path, settings)
    assert (report.new, report.rejected, dict(report.reasons)) == (1, 2, {"before_collection": 2})
    first_day, days, refused = stored("cardsfirst-ingest")
    assert first_day == date(1999, 1, 9) and days == [date(1999, 1, 9)]
    assert [(reason, detail) for reason, detail, _ in refused] == [
        ("before_collection", "1990-01-01 is before the collection's first day of trading, 1999-01-09"),
        ("before_collection", "1999-01-08 is before the collection's first day of trading, 1999-01-09")]
    assert refused[0][2] == {"date": "1990-01-01", "card_id": CARD, "market_price": "10.0"}

    again = card_prices.ingest_prices_file(path, settings)  # idempotent: nothing new, nothing kept twice
    assert (again.new, again.unchanged, again.rejected, again.rejected_kept_before) == (0, 1, 2, 2)
    assert stored("cardsfirst-ingest") == (first_day, days, refused)


def test_the_first_day_follows_the_file(database, tmp_path):
    universe = replace(read_universe(get_settings().cards_config), collection="cardsfirst-edit")
    load_universe(universe)
    edited = load_universe(replace(universe, first_day=date(2000, 1, 1)))
    assert (edited.first_day, edited.first_day_changed) == (date(2000, 1, 1), True)
    config = tmp_path / "no-first-day.yaml"  # a file without one stores none: only the 1970 bound is left
    text = get_settings().cards_config.read_text().replace("collection: cards\n", "collection: cardsfirst-edit\n")
    config.write_text("\n".join(line for line in text.splitlines() if not line.startswith("first_day:")))
    result = runner.invoke(cli, ["cards", "load", "--config", str(config)])
    assert result.exit_code == 0 and "first day of trading: none" in " ".join(result.output.split()), result.output
    with session_scope() as session:
        coll = session.exec(select(Collection).where(Collection.slug == "cardsfirst-edit")).one()
        assert coll.first_day is None
    path = tmp_path / "old.csv"
    pd.DataFrame({"date": ["1990-01-01"], "card_id": [CARD], "market_price": ["10.0"]}).to_csv(path, index=False)
    assert card_prices.ingest_prices_file(path, get_settings().for_collection("cardsfirst-edit")).new == 1

