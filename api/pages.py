"""Server-rendered web pages: home, item, performance, backtest, models, queue.

The pages call the same plain read functions as the JSON API (fairvalue/reads.py) and render
them with Jinja2; chart data is embedded in the page as JSON and drawn by the vendored Chart.js
(api/static/vendor), so a page needs no API call and no CDN. Every collection page exists at
/ for the default collection (FAIRVALUE_COLLECTION) and at /c/{slug}/... for any collection.
Pages are not API operations, so they stay out of the OpenAPI document; a page that takes query
parameters declares them as an API handler does (an OpenAPI block in its docstring), and any other
is refused with a 400 page (api.deps.Route).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Undefined
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

# SLUG: one pattern for the collection slugs of the API and pages
from api.auth import is_operator
from api.deps import SLUG, Route, float_param, query_value, window_params
from fairvalue import answers, item_reads, market_reads, model_reads, queue_reads, reads, signal_reads, track_record
from fairvalue.errors import BadInput, Lost, NotFound, NotReady
from fairvalue.settings import get_settings
from models import gates
from models.signals import BUY, DEVIATION_DIGITS, LAST_SALE, SELL, agrees
from storage.ingest import DAILY_PRICES, UNIQUE_ITEMS

HERE = Path(__file__).resolve().parent
TOP_SIGNALS = 10
templates = Jinja2Templates(directory=HERE / "templates")


# --- formatting filters ------------------------------------------------------------------------

def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool | Undefined):  # Undefined: a metric the answer lacks
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def money(value: Any, currency: str = "") -> str:
    """Prices span 0.01 to thousands: four significant figures below 100, whole numbers above."""
    v = _finite(value)
    if v is None:
        return "—"
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"
    return f"{text} {currency}".strip()


def pct(value: Any, signed: bool = False, digits: int = 1) -> str:
    """A fraction as a percentage: 0.137 → "13.7 %"."""
    v = _finite(value)
    return percent(None if v is None else v * 100, signed, digits)


def percent(value: Any, signed: bool = False, digits: int = 1) -> str:
    """A value in percent already (an explanation's effect_pct), as pct writes one: 13.7 → "13.7 %"."""
    v = _finite(value)
    if v is None:
        return "—"
    return f"{v:{'+' if signed else ''}.{digits}f} %"


def deviation(value: Any, signal: str | None, basis: str | None, thresholds: dict | None) -> str:
    """A signal's deviation as pct writes it, to one decimal unless that reads on the other side of
    a threshold than its signal (a HOLD at 14.96 % is "+15.0 %" to one decimal, at a 15 % SELL
    threshold): then to as many more as it takes, at most the answer's own, which always agrees
    (models.signals._answered). `basis`: the price the signal read (a quote's is judged as a sale).
    One that does not agree even to those is not the deviation its signal read (a card explanation's,
    of a price of another day than the snapshot's): no digit reconciles the two, so it is written
    as pct writes any other, to one decimal (it showed the answer's four: "-12.3456 %")."""
    v = _finite(value)
    if v is None or not thresholds:
        return pct(value, True)
    most = DEVIATION_DIGITS - 2  # the answer's digits, in percent
    for digits in range(1, most + 1):
        shown = round(v * 100, digits) / 100
        if agrees(shown, signal == BUY, signal == SELL, basis == LAST_SALE, thresholds["buy_below"],
                  thresholds["sell_above"]):
            return pct(v, True, digits)
    return pct(v, True)


def number(value: Any, digits: int = 2) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    v = _finite(value)
    if v is None:
        return "—"
    return f"{v:,.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:,.{digits}f}"


def when(value: str | None) -> str:
    """An ISO time from the read functions as 'YYYY-MM-DD HH:MM UTC' (dates stay dates)."""
    if not value:
        return "—"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return value if len(value) == 10 else parsed.strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters.update(money=money, pct=pct, percent=percent, deviation=deviation, number=number, when=when)


# --- rendering ----------------------------------------------------------------------------------

def _slug(request: Request) -> str | None:
    slug = request.path_params.get("slug")
    if slug is not None and not SLUG.fullmatch(slug):
        raise NotFound(f"unknown collection {slug[:64]!r}")
    return slug


def _base(request: Request) -> str:
    """Prefix of this collection's page links: '' for the default collection, '/c/<slug>' otherwise."""
    slug = _slug(request)
    return f"/c/{slug}" if slug else ""


def json_safe(value: Any) -> Any:
    """Chart data as strict JSON: NaN and infinities (JSON.parse refuses them) become null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    slug = _slug(request) if "slug" in request.path_params else None
    context.setdefault("active", template.removesuffix(".html"))
    if "chart" in context:
        context["chart"] = json_safe(context["chart"])
    return templates.TemplateResponse(
        request, template, {"base": _base(request), "slug": slug or get_settings().collection, **context},
        status_code=status_code,
    )


def error_page(request: Request, status_code: int, detail: str) -> Response:
    titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 429: "Too many requests",
              500: "Something went wrong", 503: "Not ready yet"}
    base = ""
    slug = request.path_params.get("slug")
    if slug and SLUG.fullmatch(slug):
        base = f"/c/{slug}"
    return templates.TemplateResponse(
        request, "error.html",
        {"base": base, "slug": slug or get_settings().collection, "active": "error",
         "status": status_code, "title": titles.get(status_code, "Error"), "detail": detail},
        status_code=status_code,
    )


def page(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """The read functions' errors as HTML pages with the matching status (the API answers JSON)."""

    @functools.wraps(handler)
    def wrapper(request: Request) -> Response:
        try:
            return handler(request)
        except NotFound as exc:
            return error_page(request, 404, str(exc))
        except BadInput as exc:
            return error_page(request, 400, str(exc))
        except NotReady as exc:
            return error_page(request, 503, str(exc))
        except Lost as exc:
            return error_page(request, 500, str(exc))

    return wrapper


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not an API client): errors then get an HTML page."""
    path = request.url.path
    api = path.startswith(("/v1/", "/metrics", "/openapi.json", "/healthz", "/readyz", "/static/"))
    return not api and "text/html" in request.headers.get("accept", "")


def _try(fn: Callable[..., dict], *args: Any, **kwargs: Any) -> tuple[dict | None, str | None]:
    """(answer, None), or (None, reason) when the data is not there (yet, or any more: an item's
    explanation whose model is gone from the store); the page shows the reason."""
    try:
        return fn(*args, **kwargs), None
    except (NotReady, Lost, BadInput) as exc:
        return None, str(exc)


def _form_dates(window: dict) -> tuple[str, str]:
    """The window as the date inputs show it: first day and last (inclusive) day."""
    last = datetime.fromisoformat(window["to"].replace("Z", "+00:00")) - timedelta(seconds=1)
    return window["from"][:10], last.date().isoformat()


# --- pages --------------------------------------------------------------------------------------

@page
def home(request: Request) -> Response:
    slug = _slug(request)
    summary = reads.summary(slug)
    buys, signals_error = _try(signal_reads.signals_page, slug, signal="BUY", limit=TOP_SIGNALS)
    sells, _ = _try(signal_reads.signals_page, slug, signal="SELL", limit=TOP_SIGNALS)
    # Each table's deviations are written at its snapshot's thresholds (a publish may come between the two reads).
    thresholds = {i: item_reads.signal_thresholds(i) for i in {p["snapshot"]["id"] for p in (buys, sells) if p}}
    market = market_reads.market(slug)
    if market.get("kind") == "daily_prices":  # cards: the median price; their index is a level from 100, not a price
        chart = {"currency": summary["currency"], "labels": ["median price", ""],
                 "days": [[d["day"], d["median_price"], None] for d in market["days"]]}
    else:
        chart = {"currency": summary["currency"],
                 "days": [[d["day"], d["floor"], d["index"]] for d in market["days"]]}
    return render(request, "home.html", summary=summary, buys=buys, sells=sells, signals_error=signals_error,
                  thresholds=thresholds, chart=chart)


@page
def search(request: Request) -> Response:
    """The home page's search box: GET /items?id=7804 → the item page. "#7804", as every page
    labels an item, is taken too (one leading '#'; the API's item ids have none).
    ---
    parameters:
      - {name: id, in: query, description: "an item id, e.g. 7804 or #7804"}
    """
    key = (query_value(request, "id") or "").strip().removeprefix("#").strip()
    if not key:
        return RedirectResponse(_base(request) or "/", status_code=303)
    answers.check_item_key(key)
    return RedirectResponse(f"{_base(request)}/items/{quote(key, safe='')}", status_code=303)


@page
def item(request: Request) -> Response:
    """An item's value, band, signal, history and explanation; a price checked against the value.
    ---
    parameters:
      - {name: price, in: query, description: "an asked price (a listing, an offer), as the API's /quote"}
    """
    slug, key = _slug(request), request.path_params["item_id"]
    valuation = item_reads.item_valuation(slug, key)
    thresholds = item_reads.signal_thresholds(valuation["snapshot"]["id"])  # its deviation is written at them
    history = reads.item_history(slug, key)
    explanation, explanation_error = _try(reads.item_explanation, slug, key, top=8, comps=8)
    # Dots: the item's sales, or for a card its market price of each day.
    dots = ([[p["day"], p["price"]] for p in history["prices"]] if "prices" in history
            else [[s["timestamp"], s["price"]] for s in history["sales"]])
    chart = {
        "currency": valuation["currency"],
        "sales": dots,
        # At the moment the values are of (a market long silent is valued then, not at the run).
        "published": [[p["valued_at"] or p["as_of"], p["fair_value"], p["p10"], p["p90"]]
                      for p in history["published"]],
    }
    # ?price=: a listing or an offer the visitor checks against the value (GET .../quote); what is
    # wrong with it (not a number, given twice) shows beside the form, as the quote's own refusals.
    asked, quote_error = _try(query_value, request, "price")
    quoted = None
    if asked:
        quoted, quote_error = _try(lambda: item_reads.quote(slug, key, float_param(request, "price")))
    return render(request, "item.html", v=valuation, thresholds=thresholds, history=history, explanation=explanation,
                  explanation_error=explanation_error, chart=chart, asked=asked or None, quoted=quoted,
                  quote_error=quote_error)


@page
def performance(request: Request) -> Response:
    """Forward accuracy over a window (default: the 90 days up to the latest sale).
    ---
    parameters:
      - {name: from, in: query, description: "ISO date or date-time"}
      - {name: to, in: query, description: "a date counts whole (inclusive); a date-time is exclusive"}
    """
    start, end = window_params(request)
    perf = track_record.performance(_slug(request), start, end)
    if perf.get("kind") == "daily_prices":  # cards: replay KPIs per card and category (docs/cards.md)
        chart = {"currency": perf["currency"], "series": [], "points": [],
                 "segments": [[r["value"], r["mape"], r["n"]] for r in perf.get("per_category", [])]}
        dates = _form_dates(perf["window"]) if "window" in perf else None  # no window: no prices yet
        return render(request, "performance_daily.html", perf=perf, chart=chart, dates=dates)
    by_type = [s for s in perf["segments"] if s["segment"] == "type" and s.get("mape") is not None]
    chart = {
        "currency": perf["currency"],
        "series": [[p["period_start"], p.get("mape"), p.get("median_ape"), p.get("n")] for p in perf["series"]],
        "segments": [[s["value"], s["mape"], s["n"]] for s in by_type],
        "points": [[p["fair_value"], p["price"]] for p in perf["points"] if p["fair_value"] and p["price"]],
    }
    return render(request, "performance.html", perf=perf, chart=chart, dates=_form_dates(perf["window"]))


@page
def backtest(request: Request) -> Response:
    """The strategy against buy-all on the forward pairs of a window.
    ---
    parameters:
      - {name: from, in: query, description: "ISO date or date-time"}
      - {name: to, in: query, description: "a date counts whole (inclusive); a date-time is exclusive"}
    """
    start, end = window_params(request)
    bt = track_record.backtest_results(_slug(request), start, end)
    chart = {name: {"equity": bt[name]["equity"], "drawdown": bt[name]["drawdown"]}
             for name in ("strategy", "buy_all", "below_market") if name in bt}  # the cards have no below_market
    return render(request, "backtest.html", bt=bt, chart=chart, dates=_form_dates(bt["window"]))


# The baseline each kind of market is scored against, as its versions' metrics name it (training
# holdout, gates' window), and as a page names it.
BASELINES = {UNIQUE_ITEMS: (("floor_baseline", "previous_day_floor"), "previous-day floor"),
             DAILY_PRICES: (("previous_price",), "previous price")}


def _forward_scores(metrics: dict, kind: str) -> dict[str, Any]:
    """A version's MAPE on sales (prices) it did not train on, and its market's baseline's on the
    same: its training holdout (`fairvalue train`) or, for a version a training request made, the
    gates' window (fairvalue/lifecycle/gating.py)."""
    gate = metrics.get("gate_evaluation") or {}
    scored = gate if "model" not in metrics and gate else metrics
    baseline = next((scored[key] for key in BASELINES[kind][0] if scored.get(key)), {})
    return {"model": (scored.get("contender" if scored is gate else "model") or {}).get("mape"),
            "baseline": baseline.get("mape"), "window": "gates" if scored is gate else "holdout"}


@page
def models(request: Request) -> Response:
    overview = model_reads.models_overview(_slug(request), people=is_operator(request))
    aliases_of: dict[int, list[str]] = {}
    for alias, version in overview["aliases"].items():
        aliases_of.setdefault(version, []).append(alias)
    for v in overview["versions"]:
        v["scores"] = _forward_scores(v["metrics"], overview["kind"])
    baseline = BASELINES[overview["kind"]][1]
    chart = {"baseline": baseline, "versions": [[v["version"], v["scores"]["model"], v["scores"]["baseline"]]
                                                for v in reversed(overview["versions"])]}
    rollbacks = [d for d in overview["decisions"] if d["decision"] == gates.ROLLBACK]
    return render(request, "models.html", overview=overview, aliases_of=aliases_of, rollbacks=rollbacks,
                  chart=chart, baseline=baseline)


@page
def queue(request: Request) -> Response:
    people = is_operator(request)
    status = queue_reads.queue_status(people=people)
    requests = model_reads.training_requests(_slug(request), limit=20, people=people)
    chart = {"queues": [[name, depth] for name, depth in status["queues"].items()]}
    return render(request, "queue.html", status=status, requests=requests["training_requests"], chart=chart)


def routes() -> list[BaseRoute]:
    """Each collection page at / (default collection) and at /c/{slug}; static files at /static."""
    out: list[BaseRoute] = [Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")]
    for prefix in ("", "/c/{slug}"):
        out += [
            Route(prefix or "/", home, methods=["GET"], include_in_schema=False),
            Route(f"{prefix}/items", search, methods=["GET"], include_in_schema=False),
            Route(f"{prefix}/items/{{item_id}}", item, methods=["GET"], include_in_schema=False),
            Route(f"{prefix}/performance", performance, methods=["GET"], include_in_schema=False),
            Route(f"{prefix}/backtest", backtest, methods=["GET"], include_in_schema=False),
            Route(f"{prefix}/models", models, methods=["GET"], include_in_schema=False),
            Route(f"{prefix}/queue", queue, methods=["GET"], include_in_schema=False),
        ]
    return out
