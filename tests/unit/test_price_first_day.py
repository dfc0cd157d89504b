"""A card price dated before the market existed is refused as `before_collection`, as a punk sale
before the punks' release is: the card universe declares the market's first day (`first_day:` in
config/cards.yaml, the Pokémon TCG Base Set's US release) and a price before it is a broken feed.
A price of 1990-01-01 was stored: the only bound was 1970."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from fairvalue.card_universe import CardConfigError, parse_universe
from fairvalue.settings import PROJECT_ROOT
from models.price_rows import PriceReason, validate_prices
from models.validation import Reason

FIRST = date(1999, 1, 9)
TODAY = date(2026, 12, 1)
CARD = {"id": "base1-4-charizard-holo", "name": "Charizard", "set": "Base Set", "number": "4/102",
        "external_id": "42382", "category": "grail"}


def row(day: str) -> dict:
    return {"date": day, "card_id": "base1-4-charizard-holo", "market_price": "300.0"}


def test_a_price_before_the_first_day_is_refused_with_its_reason():
    batch = validate_prices([row("1990-01-01"), row("1999-01-08"), row("1999-01-09"), row("2025-07-19")],
                            {"base1-4-charizard-holo"}, TODAY, FIRST)
    assert [o.day for o in batch.clean] == [date(1999, 1, 9), date(2025, 7, 19)]
    assert [(r.reason, r.detail) for r in batch.rejected] == [
        ("before_collection", "1990-01-01 is before the collection's first day of trading, 1999-01-09"),
        ("before_collection", "1999-01-08 is before the collection's first day of trading, 1999-01-09")]
    assert batch.rejected[0].row == row("1990-01-01")  # kept whole
    assert PriceReason.BEFORE_COLLECTION == Reason.BEFORE_COLLECTION  # the sales' reason, by name


def test_without_a_first_day_only_the_epoch_bounds_a_price():
    batch = validate_prices([row("1990-01-01"), row("1969-12-31")], {"base1-4-charizard-holo"}, TODAY)
    assert [o.day for o in batch.clean] == [date(1990, 1, 1)]
    assert [r.reason for r in batch.rejected] == ["malformed_date"]


def test_the_universe_declares_the_first_day():
    assert parse_universe({"cards": [CARD], "first_day": "1999-01-09"}).first_day == FIRST
    assert parse_universe(yaml.safe_load("first_day: 1999-01-09\ncards: []\n") | {"cards": [CARD]}).first_day == FIRST
    assert parse_universe({"cards": [CARD]}).first_day is None  # optional
    for bad in ("1999-13-01", "1960-01-01", "soon"):
        with pytest.raises(CardConfigError, match="header: first_day"):
            parse_universe({"cards": [CARD], "first_day": bad})


def test_the_bundled_universe_starts_with_the_base_set():
    document = yaml.safe_load((PROJECT_ROOT / "config" / "cards.yaml").read_text())
    assert parse_universe(document).first_day == FIRST
