"""The card price fixture: made by the documented generator, realistic enough to test the model on."""

from __future__ import annotations

import pandas as pd

from fairvalue.card_universe import read_universe
from fairvalue.settings import PROJECT_ROOT, get_settings
from models.cards_fixture import generate

DATA = PROJECT_ROOT / "data" / "cards"


def universe_pairs():
    return [(c.id, c.category) for c in read_universe(get_settings().cards_config).cards]


def test_committed_fixture_is_exactly_what_the_generator_makes():
    fixture = generate(universe_pairs(), days=200, seed=7, start="2025-01-01")
    committed = pd.read_csv(DATA / "prices.csv", dtype={"date": str, "card_id": str})
    pd.testing.assert_frame_equal(fixture.prices.reset_index(drop=True), committed, check_dtype=False)
    events = pd.read_csv(DATA / "fixture_events.csv", dtype={"date": str, "subject": str})
    pd.testing.assert_frame_equal(fixture.events, events, check_dtype=False)


def test_fixture_covers_forty_cards_over_180_days_with_regimes_spikes_and_gaps():
    prices = pd.read_csv(DATA / "prices.csv")
    events = pd.read_csv(DATA / "fixture_events.csv")
    assert prices["card_id"].nunique() == 40
    assert prices["date"].nunique() >= 180
    assert 0.005 < 1 - len(prices) / (40 * prices["date"].nunique()) < 0.05  # some card-days missing
    assert (prices["market_price"] > 0).all() and (prices["volume"] >= 0).all()
    kinds = events["kind"].str.split(":").str[0].value_counts()
    assert kinds["spike"] >= 20 and kinds["card regime change"] >= 3 and kinds["category regime"] >= 3
    # A spike really shows in the prices: the card's price that day is above its previous week's median.
    spike = events[events["kind"] == "spike"].sort_values("size").iloc[-1]
    series = prices[prices["card_id"] == spike["subject"]].set_index("date")["market_price"]
    day = series.index.get_loc(spike["date"]) if spike["date"] in series.index else None
    if day is not None and day >= 7:
        assert series.iloc[day] > series.iloc[day - 7:day].median() * 1.1


def test_same_seed_same_rows_other_seed_other_rows():
    pairs = universe_pairs()[:5]
    a = generate(pairs, days=30, seed=1).prices
    assert a.equals(generate(pairs, days=30, seed=1).prices)
    assert not a.equals(generate(pairs, days=30, seed=2).prices)


def test_a_short_series_is_generated_for_every_length_the_command_takes():
    """`fairvalue cards fixture --days 5` (any of 2..20) failed with `low >= high`: an event's day was
    drawn from day 5 or 20 on. Every card has a price on the first day, whatever the length."""
    pairs = universe_pairs()
    for days in range(2, 25):
        for seed in (1, 7):
            prices = generate(pairs, days=days, seed=seed).prices
            assert prices["date"].nunique() == days, (days, seed)
            assert prices[prices["date"] == prices["date"].min()]["card_id"].nunique() == len(pairs)
