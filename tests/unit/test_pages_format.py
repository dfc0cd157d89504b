"""The web pages' number formatting and their query handling (api/pages.py), without a server."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from jinja2 import Undefined

from api.pages import _form_dates, _forward_scores, json_safe, money, number, pct, when
from fairvalue.answers import parse_window
from fairvalue.errors import BadInput


def test_money_keeps_four_significant_figures_below_100_and_whole_units_above():
    assert money(63.876, "ETH") == "63.88 ETH"
    assert money(0.012345) == "0.01235"
    assert money(1234.5, "ETH") == "1,234 ETH"
    assert money(None, "ETH") == money(math.nan) == money(Undefined()) == "—"


def test_percentages_numbers_and_times():
    from api.pages import percent  # a value in percent already (an explanation's effect_pct)

    assert pct(0.1371) == "13.7 %" and pct(0.008, signed=True) == "+0.8 %" and pct(-0.25, True) == "-25.0 %"
    assert pct(math.inf) == pct("n/a") == "—"
    assert percent(687.4, signed=True) == pct(6.874, signed=True) == "+687.4 %"
    assert percent(-12.25) == "-12.2 %" and percent(None) == "—"
    assert number(10_000) == "10,000" and number(0) == "0" and number(1.2345) == "1.23" and number(-2.0) == "-2"
    assert when("2021-12-31T23:12:16Z") == "2021-12-31 23:12 UTC" and when("2021-12-31") == "2021-12-31"
    assert when(None) == "—"


def test_chart_data_is_strict_json():
    data = json_safe({"a": [1.0, math.nan, {"b": -math.inf}], "c": "x"})
    assert json.loads(json.dumps(data, allow_nan=False)) == {"a": [1.0, None, {"b": None}], "c": "x"}


def test_the_to_date_of_the_form_includes_that_day():
    assert parse_window(None, "2021-11-30")[1] == datetime(2021, 12, 1, tzinfo=UTC)
    assert parse_window(None, "2021-11-30T12:00:00Z")[1] == datetime(2021, 11, 30, 12, tzinfo=UTC)
    assert parse_window(None, None) == (None, None)
    for bad in ("2021-02-30", "9999-12-31"):  # the day after 9999-12-31 does not exist
        with pytest.raises(BadInput):
            parse_window(None, bad)
    assert _form_dates({"from": "2021-11-01T00:00:00Z", "to": "2021-12-01T00:00:00Z"}) == ("2021-11-01", "2021-11-30")


def test_errors_are_pages_for_browsers_and_json_for_api_clients():
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from api import errors

    def boom(request):
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/boom", boom), Route("/v1/boom", boom)], exception_handlers=errors.HANDLERS)
    client = TestClient(app, raise_server_exceptions=False)
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path, status in (("/boom", 500), ("/nope", 404)):
        page = client.get(path, headers=html)
        assert (page.status_code, page.headers["content-type"]) == (status, "text/html; charset=utf-8")
        assert f'<p class="status">{status}</p>' in page.text
        assert client.get(path).json()["status"] == status  # no text/html in Accept: the JSON error
    assert client.get("/v1/boom", headers=html).json() == {"error": "internal error; it has been logged", "status": 500}
    assert client.get("/v1/nope", headers=html).json()["status"] == 404


def test_a_version_a_training_request_made_shows_its_score_on_the_gates_window():
    trained = {"holdout_start": "2021-12-01T00:00:00Z", "model": {"mape": 0.125}, "floor_baseline": {"mape": 0.187}}
    gated = {"gate_evaluation": {"contender": {"mape": 0.113}, "champion": {"mape": 0.12},
                                 "previous_day_floor": {"mape": 0.233}}}
    assert _forward_scores(trained, "unique_items") == {"model": 0.125, "baseline": 0.187, "window": "holdout"}
    assert _forward_scores(gated, "unique_items") == {"model": 0.113, "baseline": 0.233, "window": "gates"}
    assert _forward_scores({}, "unique_items") == {"model": None, "baseline": None, "window": "holdout"}


def test_a_card_version_is_scored_against_the_previous_price():
    """The cards' models page showed "floor MAPE —": their baseline is the previous price."""
    trained = {"model": {"mape": 0.03}, "previous_price": {"mape": 0.05}}
    gated = {"gate_evaluation": {"contender": {"mape": 0.031}, "previous_price": {"mape": 0.052}}}
    assert _forward_scores(trained, "daily_prices") == {"model": 0.03, "baseline": 0.05, "window": "holdout"}
    assert _forward_scores(gated, "daily_prices") == {"model": 0.031, "baseline": 0.052, "window": "gates"}


@pytest.mark.parametrize(("value", "signal", "basis", "shown"), [
    (0.1496, "HOLD", "last_sale", "+14.96 %"),  # "+15.0 %" beside HOLD read as a SELL at 15 %
    (-0.09996, "HOLD", "last_sale", "-9.996 %"),  # "-10.0 %" read as a BUY at 10 %
    (-0.099996, "HOLD", "ask", "-9.9996 %"),  # the answer's own digits at most, which always agree
    (0.1234, "HOLD", "last_sale", "+12.3 %"),  # far from a threshold: one decimal
    (0.15, "SELL", "last_sale", "+15.0 %"), (-0.1, "BUY", "ask", "-10.0 %"), (0.1504, "SELL", "last_sale", "+15.0 %"),
    (0.2, "HOLD", "ask", "+20.0 %"),  # an ask over the value makes no SELL: nothing to contradict
    (None, "HOLD", None, "—"),
])
def test_a_deviation_is_written_on_its_signals_side_of_each_threshold(value, signal, basis, shown):
    from api.pages import deviation

    assert deviation(value, signal, basis, {"buy_below": 0.10, "sell_above": 0.15}) == shown
    assert deviation(value, signal, basis, None) == pct(value, True)  # no thresholds known: as before
