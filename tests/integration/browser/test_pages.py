"""Every web page in headless Chromium at desktop and phone width, against the seeded app served by
uvicorn: the page shows the numbers the read functions give, each chart drew pixels on a canvas of
nonzero size, nothing overflows sideways on a phone, the console stayed free of errors, and a
screenshot of each page is saved (listed at the end of the run)."""

from __future__ import annotations

import base64
import json
import math
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.pages import money, number, pct
from fairvalue import item_reads, model_reads, reads, signal_reads, track_record
from tests.integration.browser.conftest import HISTORY, TAKEN

pytestmark = pytest.mark.integration

DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
# The track-record pages are asked for the window of the published history, not for their default
# (the 90 days up to the latest sale): a sale an earlier file stored at the time it ran (a webhook's)
# moves the default window off the history, to days with few scored sales and no market index.
WINDOW = (HISTORY[0].date().isoformat(), HISTORY[-1].date().isoformat())
WINDOW_QUERY = f"?from={WINDOW[0]}&to={WINDOW[1]}"

# Per canvas: its size, whether its parent box is shown, and how many pixels are not transparent.
CANVAS_STATE = """
return Array.from(document.querySelectorAll('canvas[data-chart]')).map(function (c) {
  var px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, drawn = 0;
  for (var i = 3; i < px.length; i += 4) { if (px[i] > 0) { drawn++; } }
  return {id: c.id, rendered: c.dataset.rendered === '1', width: c.clientWidth, height: c.clientHeight, drawn: drawn};
});
"""


def _expected_pages(published_history) -> dict[str, dict]:
    """What each page must show, computed from the same read functions the pages render."""
    summary = reads.summary()
    top_buy = signal_reads.signals_page(signal="BUY", limit=1)["signals"]
    top_sell = signal_reads.signals_page(signal="SELL", limit=1)["signals"]
    item = item_reads.item_valuation(None, "7804")
    perf = track_record.performance(None, *WINDOW)
    bt = track_record.backtest_results(None, *WINDOW)
    models = model_reads.models_overview()
    champion = next(v for v in models["versions"] if v["version"] == models["aliases"]["champion"])
    return {
        "home": {"path": "/", "charts": ["market-chart"],
                 "texts": [summary["name"], "Top BUY signals", "Top SELL signals",
                           *[f"#{s['item_id']}" for s in top_buy + top_sell]]},
        "item": {"path": "/items/7804", "charts": ["item-chart"],
                 "texts": ["#7804", "Alien", money(item["fair_value"], item["currency"]), item["signal"],
                           "Why this value", "Comparable sales"]},
        "performance": {"path": "/performance" + WINDOW_QUERY,
                        "charts": ["series-chart", "segments-chart", "scatter-chart"],
                        "texts": ["Forward performance", pct(perf["model"]["mape"]), "By segment",
                                  f"{number(perf['counts']['n_scored'])} of "
                                  f"{number(perf['counts']['n_sales'])} sales"]},
        "backtest": {"path": "/backtest" + WINDOW_QUERY, "charts": ["equity-chart", "drawdown-chart"],
                     "texts": ["Equity curves", "Drawdowns", "Sharpe", number(bt["strategy"]["sharpe"]),
                               pct(bt["buy_all"]["total_return"], True)]},
        "models": {"path": "/models", "charts": ["versions-chart"],
                   "texts": ["Registry", "Decisions", f"champion → v{champion['version']}", champion["sha256"][:12]]},
        "queue": {"path": "/queue", "charts": ["queue-chart"],
                  "texts": ["Depth per queue", "nowcast", "training", "Recent training requests"]},
        "not-found": {"path": "/items/10000", "charts": [], "status": 404,
                      "texts": ["404", "Not found", "no item '10000'"]},
    }


def _console_errors(browser, allowed: str | None = None) -> list[str]:
    return [e["message"] for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and not (allowed and allowed in e["message"])]


def _screenshot(browser, metrics: dict, path) -> None:
    """The whole page: the emulated screen is made as tall as the page, the charts get two animation
    frames to redraw at that size (Chart.js redraws on resize), then the screen is captured."""
    height = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": math.ceil(height)})
    browser.execute_async_script("var done = arguments[0]; requestAnimationFrame(function () {"
                                 " requestAnimationFrame(function () { setTimeout(done, 50); }); });")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    path.write_bytes(base64.b64decode(shot["data"]))
    TAKEN.append(path)


def test_pages_render_in_chromium(live_server, published_history, browser, screenshots):
    pages = _expected_pages(published_history)
    # the history gives the track-record pages forward pairs
    assert track_record.performance(None, *WINDOW)["model"]["n"] > 100
    browser.get_log("browser")  # start with an empty console log
    failures = []
    for name, page in pages.items():
        for width, metrics in (("desktop", DESKTOP), ("phone", PHONE)):
            browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            browser.get(live_server + page["path"])
            WebDriverWait(browser, 30).until(lambda b: b.execute_script(
                "return document.readyState === 'complete' && Array.from(document.querySelectorAll("
                "'canvas[data-chart]')).every(function (c) { return c.dataset.rendered === '1'; })"))
            where = f"{name} ({width})"
            text = browser.find_element(By.TAG_NAME, "body").text
            failures += [f"{where}: missing {t!r}" for t in page["texts"] if t not in text]
            canvases = {c["id"]: c for c in browser.execute_script(CANVAS_STATE)}
            if sorted(canvases) != sorted(page["charts"]):
                failures.append(f"{where}: charts {sorted(canvases)}, expected {sorted(page['charts'])}")
            for c in canvases.values():
                if not (c["rendered"] and c["width"] > 100 and c["height"] > 100 and c["drawn"] > 500):
                    failures.append(f"{where}: chart {c} is empty or has no size")
            overflow = browser.execute_script("return document.documentElement.scrollWidth") - metrics["width"]
            if overflow > 1:
                failures.append(f"{where}: the page is {overflow}px wider than the viewport")
            _screenshot(browser, metrics, screenshots / f"{name}-{width}.png")
            # A 404 document load is logged by Chrome itself; that one is the expected answer.
            allowed = "status of 404" if page.get("status") == 404 else None
            failures += [f"{where}: console error {m}" for m in _console_errors(browser, allowed)]
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert not failures, "\n".join(failures)
    assert len(TAKEN) == 2 * len(pages)


def test_search_box_leads_to_the_item_page(live_server, published_history, browser):
    browser.get(live_server + "/")
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=id]")
    box.send_keys("7804")
    box.submit()
    WebDriverWait(browser, 30).until(lambda b: b.current_url.endswith("/items/7804"))
    assert "#7804" in browser.find_element(By.TAG_NAME, "h1").text
    assert not _console_errors(browser)


def _get(url: str, accept: str = "text/html") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("content-type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode()


def test_collection_paths_search_and_errors(live_server, seeded):
    """Pages also live under /c/{slug}; the search box redirects; errors are pages for a browser
    and stay JSON for API clients; pages are not in the OpenAPI document."""
    status, kind, body = _get(live_server + "/c/cryptopunks/items/7804")
    assert status == 200 and kind.startswith("text/html") and 'href="/c/cryptopunks/performance"' in body
    status, _, body = _get(live_server + "/items?id=7804")  # redirected to /items/7804
    assert status == 200 and "#7804" in body and 'href="/performance"' in body
    assert _get(live_server + "/c/nope/models")[:2] == (404, "text/html; charset=utf-8")
    status, _, body = _get(live_server + "/items?id=bad%20id")
    assert status == 400 and "malformed item id" in body
    for page in ("performance", "backtest"):  # a window with no sale: an explanation, not an error
        status, _, body = _get(live_server + f"/{page}?from=2000-01-01&to=2000-01-31")
        assert status == 200 and 'class="notice"' in body and 'value="2000-01-31"' in body, page
        status, _, body = _get(live_server + f"/c/cryptopunks/{page}?from=2021-12-01&to=2021-11-01")
        assert status == 400 and "to must be after from" in body, page
    # The item page checks a price against the value (the quote), and says why it cannot.
    value = json.loads(_get(live_server + "/v1/items/7804", "application/json")[2])
    status, _, body = _get(live_server + f"/items/7804?price={value['fair_value'] * 0.8}")
    assert status == 200 and 'class="quote"' in body and "BUY" in body and "-20.0 %" in body
    status, _, body = _get(live_server + "/items/7804?price=-3")
    assert status == 200 and "price must be above 0" in body
    status, _, body = _get(live_server + "/no-such-page")
    assert status == 404 and "<html" in body
    status, kind, body = _get(live_server + "/v1/no-such-thing")
    assert (status, kind) == (404, "application/json") and '"status":404' in body
    status, kind, _ = _get(live_server + "/static/vendor/chart.js-4.6.1/chart.umd.min.js", "*/*")
    assert status == 200 and "javascript" in kind
    paths = _get(live_server + "/openapi.json", "application/json")[2]
    assert '"/performance"' not in paths and '"/c/{slug}' not in paths and '"/items/{item_id}"' not in paths
