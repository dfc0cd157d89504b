"""A card's explanation reads the market price of its own valued day, which can be another day's
than the one the published signal read (a price that came late, a correction): its deviation is
then not the signal's, and the page wrote it with the signal's rule, which no digit satisfies, so
to the answer's four decimals ("-12.3456 %"). Without a server: the filter, and item.html rendered."""

from __future__ import annotations

from api.pages import deviation, templates

THRESHOLDS = {"buy_below": 0.10, "sell_above": 0.15}


def test_a_deviation_its_signal_did_not_read_is_written_to_one_decimal():
    # A HOLD read from the last sale: -12.3456 % is a BUY's side at any number of digits.
    assert deviation(-0.123456, "HOLD", "last_sale", THRESHOLDS) == "-12.3 %"
    assert deviation(0.171717, "BUY", "ask", THRESHOLDS) == "+17.2 %"
    # The signal's own deviation still gets the digits that keep it on its side.
    assert deviation(-0.099996, "HOLD", "ask", THRESHOLDS) == "-9.9996 %"


def card_page(explanation: dict) -> str:
    """item.html for a card valued HOLD on its last price (+5 %), with `explanation`."""
    valuation = {"item_id": "card-1", "type": "card", "attributes": {}, "currency": "USD", "signal": "HOLD",
                 "signal_basis": "last_sale", "deviation": 0.05, "fair_value": 10.0, "model_version": 1,
                 "band": {"p10": 9.0, "p90": 11.0}, "snapshot": {"id": 1, "valued_at": "2026-12-05T00:00:00Z"},
                 "last_sale": {"price": 10.5, "timestamp": "2026-12-05"}, "ask": None}
    return templates.env.get_template("item.html").render(
        v=valuation, thresholds=THRESHOLDS, history={"prices": [], "published": []}, explanation=explanation,
        base="/v1/collections/cards", slug="cards", chart={})


def test_a_card_explanation_of_another_day_says_so_and_writes_its_deviation_plainly():
    page = card_page({"method": "median of the card's last 28 daily prices", "valued_day": "2026-12-04",
                      "category": "rare", "market_price": 8.77, "fair_value": 10.0034, "published_fair_value": 10.0,
                      "matches_published": False, "deviation": -0.123456, "category_index_move_over_window": 0.01,
                      "window_prices": {"n": 20, "median": 9.9, "first_day": "2026-11-06"}})
    assert "-12.3 % vs fair value" in page and "-12.3456" not in page
    assert "not the published" in page  # a card's explanation that values another day says so, as an item's does
