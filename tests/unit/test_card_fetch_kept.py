"""The card collector's fetched answers survive the artifact store unchanged, so a retry of the
store step reads what the paid API said (fairvalue/card_prices.py save_fetched/load_fetched)."""

from __future__ import annotations

from datetime import date

from fairvalue.card_prices import FetchedPrices, load_fetched, save_fetched
from storage.artifacts import LocalStore


def test_kept_answers_read_back_as_they_were_fetched(tmp_path):
    fetched = FetchedPrices("cards", date(2026, 12, 5), "api:http://prices", cards=2,
                            answers={"base1-4": {"data": [{"priceHistory": {"2026-12-04": 412.5}}]}},
                            failures={"base1-2": {"reason": "timeout", "detail": "the answer took over 5s",
                                                  "attempts": 3, "external_id": "42"}},
                            waits=[0.5, 1.0])
    store = LocalStore(tmp_path)
    kept = save_fetched(store, fetched)
    assert "card-prices/cards/2026-12-05-" in kept["uri"] and kept["uri"].endswith(".json")
    assert load_fetched(store, kept) == fetched
    assert save_fetched(store, fetched) == kept  # the same answers: the same artifact
