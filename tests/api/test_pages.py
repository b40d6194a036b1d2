"""The dashboard and GraphiQL in a real browser (Debian's chromium + chromedriver via selenium).

One module-scoped dataset (a week of loadgen traffic for two merchants plus the last half hour,
rolled up like the demo), the API served by uvicorn on a loopback port, one headless browser.
The page's numbers are compared with the API's answers to the same query, computed here
independently (range, zone, filters); every request the browser makes must go to the API's own
origin; the console must stay clean. No browser means a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from opensearchpy import OpenSearch
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.app import create_app
from api.keys import create_key
from bench.browser import launch
from ingest.contract import validate
from ingest.loadgen import Generator, LoadSpec
from ingest.loadgen_rates import demo_rates
from pulse.naming import Names
from pulse.settings import Settings
from rollups.job import catch_up
from storage import fx
from tests.api.helpers import index_events

MERCHANT = "m00000"
MULTI = "m00007"  # sells in several currencies (ingest.loadgen.multi_currency)
REPORT_METRICS = [
    "GROSS_SALES",
    "NET_SALES",
    "PAYMENTS",
    "PAYMENT_SUCCESS_RATE",
    "AVERAGE_TICKET",
    "UNIQUE_CUSTOMERS",
    "REFUND_RATE",
    "DISPUTES",
    "EVENTS",
]
BREAKDOWN_METRICS = ["EVENTS", "PAYMENTS", "GROSS_SALES", "AVERAGE_TICKET", "PAYMENT_SUCCESS_RATE"]
MINUTE_MS = 60_000


# ---- the stack: data, servers, keys ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An app served by uvicorn in a thread on a loopback port, stopped at teardown."""

    def __init__(self, settings: Settings, client: OpenSearch | None = None) -> None:
        self.port = _free_port()
        config = uvicorn.Config(
            create_app(settings, client), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        self.origin = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def dataset(api_settings: Settings, api_client: OpenSearch, api_names: Names) -> int:
    """Four days of day-shaped traffic plus an event every ~12 s of the last 30 minutes
    (demo-like, smaller: indexing and rolling up cost the test's time)."""
    now = int(time.time() * 1000)
    gen = Generator(LoadSpec(merchants=1, seed=18, customers_per_merchant=400))
    days = [validate(e) for e in gen.events(2000, now - 4 * 86_400_000, now - 30 * MINUTE_MS)]
    rng = random.Random(18)
    recent = [
        validate(gen.event_at(rng.randrange(now - 30 * MINUTE_MS, now - 2_000))) for _ in range(150)
    ]
    # A merchant selling in several currencies (loadgen's rank 7), and the demo's daily rates.
    several = Generator(LoadSpec(merchants=8, zipf_s=0.0, seed=19, customers_per_merchant=200))
    abroad = [
        event
        for event in map(validate, several.events(1600, now - 4 * 86_400_000, now - MINUTE_MS))
        if event.merchant_id == MULTI
    ]
    fx.load(api_client, api_names, demo_rates())
    t0 = time.perf_counter()
    written = index_events(api_client, api_settings, api_names, [*days, *recent, *abroad], now)
    t1 = time.perf_counter()
    catch_up(api_client, api_settings, api_names)
    print(f"index {t1 - t0:.1f}s rollups {time.perf_counter() - t1:.1f}s")
    return written


@pytest.fixture(scope="module")
def server(api_settings: Settings, api_client: OpenSearch, dataset: int) -> Iterator[Served]:
    served = Served(api_settings, api_client)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def merchant_key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, MERCHANT, admin=False)[0]


def ask(origin: str, key: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The API's own answer (over HTTP, like any client)."""
    response = httpx.post(
        f"{origin}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


# ---- the browser ----------------------------------------------------------------------------


class Browser:
    """Headless chromium; console and network logs collected across page loads."""

    def __init__(self, profile: Path) -> None:
        self.driver: WebDriver = launch(profile)  # fails (never skips) without the browser
        self.console: list[dict[str, Any]] = []
        self.requests: list[str] = []

    def drain_logs(self) -> None:
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                self.requests.append(message["params"]["url"])

    def wait(self, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            state = self.driver.execute_script(
                "return document.body && document.body.dataset.state"
            )
            status = self.driver.execute_script(
                "const s = document.getElementById('status'); return s && s.textContent"
            )
            self.drain_logs()
            raise AssertionError(
                f"timed out at {self.driver.current_url}; page state={state!r} status={status!r}; "
                f"console: {self.console[-5:]}"
            ) from None

    def state_is(self, *names: str, timeout: float = 20) -> None:
        self.wait(
            lambda d: d.execute_script("return document.body.dataset.state") in names, timeout
        )

    def by_id(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)

    def choose(self, element_id: str, value: str) -> None:
        """Pick an option the way a user does (fires the change event)."""
        Select(self.by_id(element_id)).select_by_value(value)

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def sign_in(b: Browser, origin: str, key: str) -> None:
    b.driver.get(f"{origin}/dashboard")
    if b.driver.execute_script("return sessionStorage.length"):  # signed in: start afresh
        b.driver.execute_script("sessionStorage.clear()")
        b.driver.refresh()
    b.wait(lambda d: d.find_element(By.ID, "key").is_displayed())
    b.by_id("key").send_keys(key)
    b.by_id("sign-in-form").submit()


# ---- what the page shows vs what the API answers --------------------------------------------


def preset_range(
    tz: str, days: int, today: date | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The range a 'last N days' preset means in ``tz`` (today included), and the period before."""
    zone = ZoneInfo(tz)
    today = today or datetime.now(zone).date()
    first = today - timedelta(days=days - 1)

    def at(day: date) -> str:
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        return midnight.astimezone(UTC).isoformat().replace("+00:00", "Z")

    span = {"start": at(first), "end": at(today + timedelta(days=1))}
    before = {"start": at(first - timedelta(days=days)), "end": at(first)}
    return span, before


REPORT = """
query($m: ID!, $r: TimeRange!, $p: TimeRange, $g: Granularity!, $tz: String!,
      $f: [DimensionFilter!]!, $metrics: [Metric!]!, $cur: String) {
  metrics(merchantId: $m, range: $r, compareTo: $p, metrics: $metrics, granularity: $g,
          timezone: $tz, filters: $f, reportingCurrency: $cur) {
    series { points { start complete values { metric value } } }
    totals { metric value }
    comparison { totals { metric value } }
  }
}"""
BREAKDOWN = """
query($m: ID!, $r: TimeRange!, $tz: String!, $d: Dimension!, $f: [DimensionFilter!]!,
      $metrics: [Metric!]!, $top: Int!, $cur: String) {
  metrics(merchantId: $m, range: $r, metrics: $metrics, granularity: ALL, timezone: $tz,
          groupBy: [$d], filters: $f, limit: $top, reportingCurrency: $cur) {
    series { group { value } points { values { metric value } } }
  }
}"""


def _num(text: str) -> float | None:
    return None if text == "" else float(text)


def page_tiles(b: Browser) -> dict[str, tuple[float | None, float | None]]:
    tiles = b.driver.execute_script(
        "return [...document.querySelectorAll('#tiles .tile')].map("
        "t => [t.dataset.metric, t.dataset.value, t.dataset.previous ?? ''])"
    )
    return {m: (_num(v), _num(p)) for m, v, p in tiles}


def api_tiles(report: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    now = {v["metric"]: v["value"] for v in report["totals"]}
    before = {v["metric"]: v["value"] for v in report["comparison"]["totals"]}
    return {m: (now[m], before[m]) for m in REPORT_METRICS[:-1]}  # every metric but EVENTS


def page_points(b: Browser) -> list[tuple[float | None, bool]]:
    rows = b.driver.execute_script(
        "return [...document.querySelectorAll('#points tbody tr')].map("
        "r => [r.dataset.value, r.dataset.complete])"
    )
    return [(_num(v), c == "true") for v, c in rows]


def api_points(report: dict[str, Any], metric: str) -> list[tuple[float | None, bool]]:
    return [
        (next(v["value"] for v in p["values"] if v["metric"] == metric), p["complete"])
        for p in report["series"][0]["points"]
    ]


def page_breakdown(b: Browser) -> list[tuple[str, list[float | None]]]:
    rows = b.driver.execute_script(
        "return [...document.querySelectorAll('#breakdown tbody tr')].filter(r => r.dataset.value"
        " !== undefined).map(r => [r.dataset.value, [...r.cells].slice(1).map(c => c.dataset.raw)])"
    )
    return [(value, [_num(x) for x in raw]) for value, raw in rows]


def api_breakdown(report: dict[str, Any]) -> list[tuple[str, list[float | None]]]:
    out = []
    for s in report["series"]:
        values = {v["metric"]: v["value"] for v in s["points"][0]["values"]}
        out.append((s["group"][0]["value"], [values[m] for m in BREAKDOWN_METRICS]))
    return out


def check_page_equals_api(
    b: Browser,
    origin: str,
    key: str,
    *,
    tz: str,
    days: int,
    granularity: str,
    dimension: str,
    filters: list[dict[str, Any]],
    merchant: str = MERCHANT,
    currency: str | None = None,
) -> dict[str, Any]:
    span, before = preset_range(tz, days)
    variables = {"m": merchant, "r": span, "tz": tz, "f": filters, "cur": currency}
    report = ask(
        origin, key, REPORT, {**variables, "p": before, "g": granularity, "metrics": REPORT_METRICS}
    )["metrics"]
    assert page_tiles(b) == api_tiles(report)
    assert page_points(b) == api_points(report, "GROSS_SALES")
    groups = ask(
        origin,
        key,
        BREAKDOWN,
        {**variables, "d": dimension, "metrics": BREAKDOWN_METRICS, "top": 10},
    )["metrics"]
    assert sorted(page_breakdown(b)) == sorted(api_breakdown(groups))
    return dict(report)


# ---- the tests ------------------------------------------------------------------------------


def test_landing_page_links_to_the_dashboard_and_the_key_stays_out_of_urls(
    server: Served, browser: Browser, merchant_key: str
) -> None:
    browser.driver.get(f"{server.origin}/")
    browser.by_id("to-dashboard").click()
    browser.wait(lambda d: d.current_url.endswith("/dashboard"))
    sign_in(browser, server.origin, merchant_key)
    browser.state_is("ready")
    stored = browser.driver.execute_script("return sessionStorage.getItem('pulse.apiKey')")
    assert stored == merchant_key
    assert merchant_key not in browser.driver.current_url
    browser.drain_logs()
    assert browser.requests and not any(merchant_key in url for url in browser.requests)


def test_numbers_equal_the_api_and_follow_range_zone_breakdown_and_filters(
    server: Served, browser: Browser, merchant_key: str
) -> None:
    b, origin = browser, server.origin
    b.driver.get(f"{origin}/dashboard")  # the key is remembered by the tab
    b.state_is("ready")
    b.choose("zone", "Asia/Kolkata")
    b.state_is("ready")
    check_page_equals_api(
        b,
        origin,
        merchant_key,
        tz="Asia/Kolkata",
        days=7,
        granularity="HOUR",
        dimension="EVENT_TYPE",
        filters=[],
    )
    assert len(page_points(b)) == 7 * 24
    assert not b.by_id("currency-field").is_displayed()  # one currency: nothing to choose
    assert sum(1 for _, complete in page_points(b) if not complete) >= 1  # today's open hours

    b.choose("preset", "30")
    b.choose("zone", "UTC")
    b.choose("dimension", "COUNTRY")
    b.state_is("ready")
    check_page_equals_api(
        b,
        origin,
        merchant_key,
        tz="UTC",
        days=30,
        granularity="DAY",
        dimension="COUNTRY",
        filters=[],
    )
    assert len(page_points(b)) == 30
    # A column header ranks by that metric: the top groups by gross sales, largest first.
    b.driver.find_element(By.CSS_SELECTOR, "#breakdown th[data-metric=GROSS_SALES]").click()
    sorted_by = (
        "const th = document.querySelector('#breakdown th.sorted'); return th.dataset.metric"
    )
    b.wait(lambda d: d.execute_script(sorted_by) == "GROSS_SALES")  # one read: no stale element
    b.state_is("ready")
    by_gross = ask(
        origin,
        merchant_key,
        BREAKDOWN,
        {
            "m": MERCHANT,
            "r": preset_range("UTC", 30)[0],
            "tz": "UTC",
            "f": [],
            "d": "COUNTRY",
            "metrics": ["GROSS_SALES", *BREAKDOWN_METRICS[:2], *BREAKDOWN_METRICS[3:]],
            "top": 10,
        },
    )["metrics"]
    shown = page_breakdown(b)
    expected = {s["group"][0]["value"]: s for s in by_gross["series"]}
    assert [value for value, _ in shown] == list(expected)  # the API ranks by its first metric
    gross = [row[2] for _, row in shown]
    assert gross == sorted(gross, reverse=True)

    b.choose("preset", "7")
    b.choose("dimension", "PAYMENT_METHOD")
    b.state_is("ready")
    method = b.driver.execute_script(
        "return document.querySelector('#breakdown tbody tr').dataset.value"
    )
    b.driver.find_element(By.CSS_SELECTOR, "#breakdown tbody tr").click()
    b.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#filters .chip"))
    b.state_is("ready")
    only = [{"dimension": "PAYMENT_METHOD", "values": [method], "exclude": False}]
    filtered = check_page_equals_api(
        b,
        origin,
        merchant_key,
        tz="UTC",
        days=7,
        granularity="HOUR",
        dimension="PAYMENT_METHOD",
        filters=only,
    )
    assert [v for v, _ in page_breakdown(b)] == [method]
    unfiltered = ask(
        origin,
        merchant_key,
        REPORT,
        {
            "m": MERCHANT,
            "r": preset_range("UTC", 7)[0],
            "p": preset_range("UTC", 7)[1],
            "tz": "UTC",
            "f": [],
            "g": "HOUR",
            "metrics": REPORT_METRICS,
        },
    )["metrics"]
    assert api_tiles(filtered)["PAYMENTS"][0] < api_tiles(unfiltered)["PAYMENTS"][0]

    b.driver.find_element(By.CSS_SELECTOR, "#filters .chip button").click()
    b.state_is("ready")
    assert page_tiles(b) == api_tiles(unfiltered)


def test_a_merchant_selling_in_several_currencies_picks_one_and_sees_converted_numbers(
    server: Served, browser: Browser, api_client: OpenSearch, api_names: Names, merchant_key: str
) -> None:
    """Without a reporting currency every money value of such a merchant is an error: the page
    offers the currencies the API names, converts to one at once, and follows a change."""
    b, origin = browser, server.origin
    key = create_key(api_client, api_names, MULTI, admin=False)[0]
    span, _ = preset_range("UTC", 7)
    refused = httpx.post(
        f"{origin}/graphql",
        json={"query": REPORT, "variables": {"m": MULTI, "r": span, "tz": "UTC", "f": [],
                                              "g": "HOUR", "metrics": REPORT_METRICS}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ).json()["errors"][0]  # fmt: skip
    offered = refused["extensions"]["currencies"]
    assert refused["extensions"]["code"] == "BAD_USER_INPUT" and len(offered) >= 2, refused
    sign_in(b, origin, key)
    b.state_is("ready")
    assert b.by_id("currency-field").is_displayed()
    shown = Select(b.by_id("currency"))
    assert [o.get_attribute("value") for o in shown.options] == ["", *offered]
    assert shown.first_selected_option.get_attribute("value") == offered[0]
    check_page_equals_api(b, origin, key, tz="UTC", days=7, granularity="HOUR",
                          dimension="EVENT_TYPE", filters=[], merchant=MULTI,
                          currency=offered[0])  # fmt: skip
    gross = b.driver.find_element(By.CSS_SELECTOR, "#tiles .tile[data-metric=GROSS_SALES] .value")
    assert gross.text.endswith(offered[0]), gross.text

    other = offered[-1]
    b.choose("currency", other)
    b.wait(lambda d: f"cur={other}" in d.current_url)  # the view (and its link) follow
    b.state_is("ready")
    b.choose("dimension", "CURRENCY")
    b.state_is("ready")
    check_page_equals_api(b, origin, key, tz="UTC", days=7, granularity="HOUR",
                          dimension="CURRENCY", filters=[], merchant=MULTI,
                          currency=other)  # fmt: skip
    assert {value for value, _ in page_breakdown(b)} >= set(offered)  # converted, all listed
    assert f"converted to {other}" in b.by_id("report-meta").text
    b.choose("dimension", "EVENT_TYPE")
    sign_in(b, origin, merchant_key)  # the tests after this one use the tab's merchant key
    b.state_is("ready")


LIVE = """
query($m: ID!, $r: TimeRange!) {
  metrics(merchantId: $m, range: $r, metrics: [EVENTS], granularity: MINUTE) { totals { value } }
}"""


def test_live_panel_shows_the_last_30_minutes_and_keeps_refreshing(
    server: Served, browser: Browser, merchant_key: str
) -> None:
    b = browser
    b.driver.get(f"{server.origin}/dashboard")
    b.state_is("ready")
    b.wait(lambda d: d.find_element(By.ID, "live").get_attribute("data-points") == "30")
    note = b.by_id("live-note").text
    b.wait(lambda d: d.find_element(By.ID, "live-note").text != note, timeout=15)  # polled again
    for _ in range(3):  # the page and this test may straddle a minute boundary: ask again
        minute = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
        live = {"start": _iso(minute + MINUTE_MS - 30 * MINUTE_MS), "end": _iso(minute + MINUTE_MS)}
        expected = ask(server.origin, merchant_key, LIVE, {"m": MERCHANT, "r": live})
        shown = b.by_id("live").get_attribute("data-events")
        if int(time.time() * 1000) // MINUTE_MS * MINUTE_MS == minute:
            break
    assert shown is not None and float(shown) == expected["metrics"]["totals"][0]["value"]
    assert float(shown) > 0
    freshness = b.by_id("freshness")
    assert freshness.get_attribute("data-ingested") and "Ingested through" in freshness.text
    assert freshness.get_attribute("data-rolled-up")


def test_screenshots_desktop_and_phone_without_horizontal_overflow(
    server: Served, browser: Browser, tmp_path: Path
) -> None:
    """Saved under $PULSE_SCREENSHOT_DIR when set (docs/ holds the README's copies)."""
    b = browser
    out = [
        tmp_path,
        *(
            [Path(os.environ["PULSE_SCREENSHOT_DIR"])]
            if os.environ.get("PULSE_SCREENSHOT_DIR")
            else []
        ),
    ]
    for name, width, height in (("desktop", 1366, 1000), ("phone", 390, 1750)):
        b.driver.set_window_size(width, height)
        b.driver.get(f"{server.origin}/dashboard#range=7&zone=UTC")
        b.state_is("ready")
        b.wait(lambda d: d.find_element(By.ID, "live").get_attribute("data-points") == "30")
        time.sleep(0.3)  # charts resize after layout settles
        viewport = b.driver.execute_script("return document.documentElement.clientWidth")
        wider = b.driver.execute_script(
            "const w = document.documentElement.clientWidth; return [...document.querySelectorAll"
            "('body *')].filter(e => e.getBoundingClientRect().right > w + 0.5).map(e => "
            "`${e.tagName}#${e.id}.${e.className}`).slice(0, 8)"
        )
        assert b.driver.execute_script("return document.documentElement.scrollWidth") <= viewport, (
            wider
        )
        png = b.driver.get_screenshot_as_png()
        assert len(png) > 10_000
        for folder in out:
            (folder / f"dashboard-{name}.png").write_bytes(png)
    b.driver.set_window_size(1366, 900)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def test_graphiql_renders_offline_and_runs_a_query_with_the_key(
    server: Served, browser: Browser, merchant_key: str
) -> None:
    b = browser
    b.driver.get(f"{server.origin}/graphql")  # same tab: the dashboard's key is in sessionStorage
    b.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".graphiql-container"))
    assert b.by_id("key").get_attribute("value") == merchant_key
    editor = "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
    clicked = [0.0]

    def answered(d: WebDriver) -> str | None:
        text = str(d.execute_script(f"return {editor}") or "")
        if "tookMs" in text:
            return text
        if time.monotonic() - clicked[0] > 3:  # a click while GraphiQL still loads is ignored
            d.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
            clicked[0] = time.monotonic()
        return None

    text = b.wait(answered, timeout=30)
    shown = json.loads(text)
    assert "errors" not in shown and shown["data"]["metrics"]["totals"][0]["metric"] == "EVENTS"
    query = b.driver.execute_script(
        "return document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
    )
    variables = json.loads(
        b.driver.execute_script(
            "return document.querySelector('.graphiql-editor-tool .CodeMirror')"
            ".CodeMirror.getValue()"
        )
    )
    expected = ask(server.origin, merchant_key, query, variables)
    for answer in (shown["data"], expected):
        answer["metrics"]["meta"]["tookMs"] = 0
    assert shown["data"] == expected
    docs = b.driver.find_element(By.CSS_SELECTOR, "[aria-label='Show Documentation Explorer']")
    docs.click()
    explorer = ".graphiql-doc-explorer"
    b.wait(
        lambda d: d.find_element(By.CSS_SELECTOR, f"{explorer} a.graphiql-doc-explorer-type-name")
    )
    b.driver.find_element(By.CSS_SELECTOR, f"{explorer} a.graphiql-doc-explorer-type-name").click()
    b.wait(
        lambda d: (
            "Every field needs Authorization" in d.find_element(By.CSS_SELECTOR, explorer).text
        )
    )  # the schema's own descriptions are the reference


def test_every_request_stays_on_the_origin_and_the_console_is_clean(
    server: Served, browser: Browser
) -> None:
    """Runs after the tests above: checks everything the browser did in them."""
    browser.drain_logs()
    assert len(browser.requests) > 10
    # chrome:// pages are the browser's own (its start page), not a page Pulse served.
    own = (server.origin + "/", "data:", "chrome://", "chrome-untrusted://", "about:")
    foreign = [u for u in browser.requests if not u.startswith(own)]
    assert any(u.startswith(server.origin + "/static/vendor/") for u in browser.requests)
    assert foreign == []
    resources = browser.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(str(u).startswith(server.origin + "/") for u in resources)
    errors = [e for e in browser.console if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []


@pytest.fixture(scope="module")
def admin_browser_key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, None, admin=True)[0]


def test_states_empty_bad_key_rate_limited_and_engine_down(
    api_settings: Settings,
    api_client: OpenSearch,
    server: Served,
    browser: Browser,
    admin_browser_key: str,
    merchant_key: str,
) -> None:
    b = browser
    # An admin key picks a merchant; one without events is the empty state.
    sign_in(b, server.origin, admin_browser_key)
    b.state_is("ready", "empty")
    assert b.by_id("merchant").is_displayed()
    merchant = b.by_id("merchant")
    merchant.clear()
    merchant.send_keys("m-no-events\n")
    b.by_id("preset").click()  # leaves the field: the change event fires
    b.state_is("empty")
    assert b.by_id("chart-empty").is_displayed()
    assert page_tiles(b)["PAYMENTS"][0] == 0

    sign_in(b, server.origin, "pulse_not-a-key")
    b.state_is("bad-key")
    assert "unknown or revoked" in b.by_id("sign-in-error").text

    limited = Served(
        api_settings.model_copy(update={"rate_limit_per_minute": 2, "rate_limit_shared": False}),
        api_client,
    )
    try:
        sign_in(b, limited.origin, merchant_key)  # viewer: 1 token; the report needs 2 more
        b.state_is("rate-limited")
        assert "Rate limit" in b.by_id("status").text
    finally:
        limited.stop()

    dead = Served(
        api_settings.model_copy(
            update={
                "opensearch_url": f"http://127.0.0.1:{_free_port()}",
                "api_request_timeout_s": 1.0,
            }
        )
    )
    try:
        sign_in(b, dead.origin, merchant_key)
        b.state_is("engine-down", timeout=30)
        assert "engine is unavailable" in b.by_id("status").text
    finally:
        dead.stop()
