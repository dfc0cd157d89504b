"""A card price far from the card's recent prices is refused as implausible_price and kept
(models.price_rows.refuse_implausible, FAIRVALUE_CARD_PRICE_MAX_JUMP): a fat-fingered 300 for a
card trading at 2,000 moved a backtest from -22 % to -55 %."""

from __future__ import annotations

import csv
from datetime import date, timedelta

from fairvalue.card_prices import jump_rule
from fairvalue.settings import PROJECT_ROOT, Settings
from models.price_rows import JumpRule, PriceReason, refuse_implausible, validate_prices

TODAY = date(2025, 7, 20)
RULE = JumpRule(max_jump=4.0, last_n=7, window_days=14)


def row(day: date, price, card="a", **extra):
    return {"date": day.isoformat(), "card_id": card, "market_price": price, **extra}


def stored_around(price: float, last: date, days: int = 10) -> dict[date, float]:
    return {last - timedelta(days=i): price * (1 + 0.01 * (i % 3)) for i in range(days)}


def test_a_fat_fingered_price_is_refused_and_kept_with_its_row():
    stored = {"a": stored_around(2000.0, date(2025, 7, 9))}
    rows = [row(date(2025, 7, 10), "300", volume="2"), row(date(2025, 7, 10), 2100, card="b"),
            row(date(2025, 7, 11), 2050)]
    batch = refuse_implausible(validate_prices(rows, {"a", "b"}, TODAY), stored, RULE)
    assert [(o.item_key, o.day, o.price) for o in batch.clean] == [
        ("b", date(2025, 7, 10), 2100.0), ("a", date(2025, 7, 11), 2050.0)]
    [refused] = batch.rejected
    assert refused.reason == PriceReason.IMPLAUSIBLE_PRICE == "implausible_price"
    assert refused.row == rows[0] and "300" in refused.detail and "2020" in refused.detail


def test_both_directions_are_bounded_by_the_factor_and_the_bound_itself_passes():
    stored = {"a": {date(2025, 7, 9): 100.0}}
    prices = [25.0, 24.9, 400.0, 400.5]
    outcomes = [refuse_implausible(validate_prices([row(date(2025, 7, 10), p)], {"a"}, TODAY), stored, RULE)
                for p in prices]
    assert [len(b.clean) for b in outcomes] == [1, 0, 1, 0]


def test_a_card_with_no_recent_price_is_not_checked():
    old = {"a": {date(2025, 6, 1): 2000.0}}  # over the 14-day window before the row's day
    for stored in ({}, old):
        batch = refuse_implausible(validate_prices([row(date(2025, 7, 10), 3)], {"a"}, TODAY), stored, RULE)
        assert [o.price for o in batch.clean] == [3.0] and batch.rejected == []


def test_a_first_backfill_is_checked_against_its_own_earlier_days_and_a_typo_vouches_for_nothing():
    days = [date(2025, 7, 1) + timedelta(days=i) for i in range(6)]
    prices = [2000, 2010, 300, 310, 1990, 2020]  # two typos in a row: the second is no level of its own
    rows = [row(d, p) for d, p in zip(days, prices, strict=True)][::-1]  # in any order
    batch = refuse_implausible(validate_prices(rows, {"a"}, TODAY), {}, RULE)
    assert sorted(o.price for o in batch.clean) == [1990.0, 2000.0, 2010.0, 2020.0]
    assert sorted(r.row["market_price"] for r in batch.rejected) == [300, 310]


def test_a_card_back_after_a_gap_is_judged_by_the_batch_s_next_prices():
    """Back after a gap, a typo on the first day was taken (nothing before it to judge by) and
    became the reference: the five right prices after it were refused for 14 days."""
    stored = {"a": stored_around(800.0, date(2025, 6, 10))}  # over 14 days before the batch
    days = [date(2025, 7, 1) + timedelta(days=i) for i in range(6)]
    typo_first = refuse_implausible(validate_prices([row(d, p) for d, p in zip(
        days, [8000, 800, 810, 790, 800, 805], strict=True)], {"a"}, TODAY), stored, RULE)
    assert sorted(o.price for o in typo_first.clean) == [790.0, 800.0, 800.0, 805.0, 810.0]
    [refused] = typo_first.rejected
    assert refused.row["market_price"] == 8000 and "next 5 price(s) in this batch" in refused.detail
    # A real new level, held by the days after it, is taken; so is a lone price (too few after it to judge).
    moved = refuse_implausible(validate_prices([row(d, 4000 + i) for i, d in enumerate(days)], {"a"}, TODAY),
                               stored, RULE)
    assert len(moved.clean) == 6 and moved.rejected == []
    lone = refuse_implausible(validate_prices([row(days[0], 8000), row(days[1], 800), row(days[2], 800)], {"a"},
                                              TODAY), stored, RULE)
    assert [o.price for o in lone.clean] == [8000.0] and len(lone.rejected) == 2


def test_a_stored_day_is_not_judged_by_the_days_after_it():
    """The collector stores each day as it comes: its first day back was stored unchecked, and a later
    run (its history holds that day again) refused it as implausible while it stayed stored."""
    stored = {"a": {**stored_around(800.0, date(2025, 6, 10)), date(2025, 7, 1): 8000.0}}
    days = [date(2025, 7, 1) + timedelta(days=i) for i in range(4)]
    later_run = refuse_implausible(validate_prices([row(d, p) for d, p in zip(days, [8000, 800, 800, 800],
                                                                                strict=True)], {"a"}, TODAY),
                                   stored, RULE)
    assert [o.day for o in later_run.clean] == [days[0]]  # no refusal of the stored day; the rest as before
    assert [r.row["date"] for r in later_run.rejected] == [d.isoformat() for d in days[1:]]
    # An operator's file of the right price replaces the stored typo, and the days after it pass.
    corrected = refuse_implausible(validate_prices([row(d, 800 + i) for i, d in enumerate(days)], {"a"}, TODAY),
                                   stored, RULE)
    assert len(corrected.clean) == 4 and corrected.rejected == []


def test_the_median_ignores_one_spike():
    stored = {"a": {date(2025, 7, 1) + timedelta(days=i): p for i, p in enumerate([100, 100, 100, 900, 100])}}
    batch = refuse_implausible(validate_prices([row(date(2025, 7, 6), 1000)], {"a"}, TODAY), stored, RULE)
    assert batch.clean == [] and batch.rejected[0].reason == PriceReason.IMPLAUSIBLE_PRICE


def test_no_bundled_price_is_refused_under_the_default_rule():
    """data/cards/prices.csv moves at most 1.95x from the median of a card's last 7 prices within
    14 days (an injected spike); the default 4x leaves room for twice that."""
    with open(PROJECT_ROOT / "data" / "cards" / "prices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    known = {r["card_id"] for r in rows}
    validated = validate_prices(rows, known, TODAY)
    assert validated.rejected == [] and len(validated.clean) == len(rows)
    batch = refuse_implausible(validated, {}, jump_rule(Settings(_env_file=None)))
    assert batch.rejected == [] and len(batch.clean) == len(rows)
    # the same file with a half-strength rule would refuse rows: the test is not vacuous
    tight = JumpRule(max_jump=1.5, last_n=7, window_days=14)
    assert refuse_implausible(validated, {}, tight).rejected
