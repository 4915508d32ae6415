"""The operator console in a real browser: Debian's headless Chromium driven by Selenium, against the real stack.

The API (uvicorn, on a free port) shares the session's worker, Temporal server, Postgres and driven paper venue.
Nothing downloads a browser: without ``/usr/bin/chromium`` and ``chromedriver`` these tests are skipped with a
message saying so (``apt-get install chromium chromium-driver``; ``.ci/run`` installs them, so CI runs them).
Screenshots of each page go to ``$EXODUS_TEST_ARTIFACTS/console/`` (default ``test-artifacts/console/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.main import create_app
from brokers.mt5.tables import register_account as register_mt5_account
from core.auth import Scope
from core.settings import ApiSettings, TokenSettings
from store.breaks import add_break, add_unmatched_report, list_breaks
from store.reconciliation import record_run
from store.sessions import heartbeat, record_session
from tests.harness import Stack, unique
from tests.store.kit import decided

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "browser tests skipped: Chromium is not installed here"
        " (apt-get install chromium chromium-driver; CI installs it)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("EXODUS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
D = Decimal
TOKENS = {
    "ops": TokenSettings(token="t-ops", roles=["operator", "risk"], scope=Scope.everything()),
    "desk": TokenSettings(token="t-desk", roles=["trader"], scope=Scope(clients="*", accounts="*", brokers="*")),
    "audit": TokenSettings(token="t-audit", roles=["auditor"], scope=Scope.everything()),
}


@contextlib.asynccontextmanager
async def _served(stack: Stack) -> AsyncIterator[str]:
    settings = stack.settings.model_copy(update={"api": ApiSettings(tokens=TOKENS)})
    app = create_app(settings, temporal=stack.client, pool=stack.pool, instruments=stack.instruments)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        if app.state.stream_hub is not None:
            await app.state.stream_hub.stop()
        sock.close()


@contextlib.contextmanager
def _browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser, driven from a thread (the API serves on this test's event loop)."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver = driver
        self.base = base

    async def run(self, fn: Callable[[WebDriver], Any]) -> Any:
        return await asyncio.to_thread(fn, self.driver)

    async def wait(self, what: str, condition: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
        """Wait for ``condition``; an element the page re-rendered meanwhile (stale) is found again."""

        def waiting(d: WebDriver) -> Any:
            return WebDriverWait(
                d, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
            ).until(condition, what)

        return await self.run(waiting)

    async def text(self, selector: str) -> str:
        """The text of the element ``selector`` (found again if the page re-renders it between find and read)."""
        return str(await self.wait(selector, lambda d: d.find_element(By.CSS_SELECTOR, selector).text or " "))

    @staticmethod
    def click(d: WebDriver, selector: str, timeout: float = 30) -> None:
        """Click ``selector`` (from a ``run``): found again if a re-render replaces it between the find and the click.

        A stale element refuses the click before anything happens, so clicking the new one is no double click.
        """

        def clicked(d: WebDriver) -> bool:
            d.find_element(By.CSS_SELECTOR, selector).click()
            return True

        WebDriverWait(d, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]).until(
            clicked, f"click {selector}"
        )

    async def sign_in(self, token: str) -> None:
        def go(d: WebDriver) -> None:
            d.get(f"{self.base}/console/")
            WebDriverWait(d, 20).until(lambda d: d.find_element(By.ID, "login").is_displayed())
            d.find_element(By.ID, "token").send_keys(token)
            d.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

        await self.run(go)
        await self.wait("stream live", lambda d: "live" in d.find_element(By.ID, "stream-state").text)

    async def open(self, page: str) -> None:
        await self.run(lambda d: d.execute_script(f"location.hash = '#/{page}'"))

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.run(lambda d: d.save_screenshot(str(ARTIFACTS / f"{name}.png")))

    async def submit_form(self, form: str, fields: dict[str, str], *, accept: bool = True) -> None:
        def fill(d: WebDriver) -> None:
            for name, value in fields.items():
                el = d.find_element(By.CSS_SELECTOR, f"#{form} [name={name}]")
                if el.tag_name == "select":
                    d.execute_script("arguments[0].value = arguments[1]", el, value)
                else:
                    el.clear()
                    el.send_keys(value)
            Page.click(d, f"#{form} button[type=submit]")
            alert = WebDriverWait(d, 10).until(lambda d: d.switch_to.alert)
            alert.accept() if accept else alert.dismiss()

        await self.run(fill)


@pytest.fixture
async def console(stack: Stack) -> AsyncIterator[tuple[Page, httpx.AsyncClient]]:
    async with _served(stack) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        with _browser() as driver:
            yield Page(driver, base), http


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post_order(stack: Stack, http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    order = {"clientId": unique("desk"), "clientOrderId": unique("co"), "symbol": "AAPL", "side": "BUY", "qty": 5}
    order.update(body)
    async with stack.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO accounts (account, created_by) VALUES (%s, 'tests') ON CONFLICT DO NOTHING",
            (order.get("account") or order["clientId"],),
        )
    return await http.post("/api/v1/orders", json=order, headers=_as("t-desk"))


async def test_the_blotter_shows_a_new_order_and_then_its_fill_without_a_reload(
    stack: Stack, console: tuple[Page, httpx.AsyncClient]
) -> None:
    page, http = console
    await stack.venue.set_mid("AAPL", D("190.00"))
    await page.sign_in("t-ops")
    await page.open("blotter")
    await page.wait("blotter", lambda d: d.find_elements(By.ID, "blotter"))
    await page.run(lambda d: d.execute_script("window.__notReloaded = true"))
    r = await _post_order(stack, http, type="LIMIT", price="150.00", timeInForce="GTC")
    assert r.status_code == 201, r.text
    order_id = r.json()["internalOrderId"]
    row = f"tr[data-id='{order_id}']"
    await page.wait("the new order", lambda d: d.find_elements(By.CSS_SELECTOR, f"{row}[data-status=ACCEPTED]"))
    await page.shot("blotter-new-order")
    await stack.venue.set_mid("AAPL", D("149.00"))  # the market comes to the resting limit: it fills
    await page.wait("its fill", lambda d: d.find_elements(By.CSS_SELECTOR, f"{row}[data-status=FILLED]"))
    # Read in one script: a later event of the order may replace the row between a find and a read (stale element).
    filled = await page.run(lambda d: d.execute_script(f'return document.querySelector("{row} td.filled").textContent'))
    assert D(filled) == 5
    assert await page.run(lambda d: d.execute_script("return window.__notReloaded === true"))
    await page.shot("blotter-filled")
    await page.run(lambda d: d.execute_script(f'document.querySelector("{row} a").click()'))
    await page.wait("the order page", lambda d: "Timeline" in d.find_element(By.ID, "page").text)
    # The risk decision of an approved order: the price it was valued at and its notional (5 at 150.00).
    decision = await page.text("#risk-decision")
    assert decision.startswith("Approved at reference ") and "notional 750.00" in decision, decision
    await page.shot("order-page")
    await stack.venue.set_mid("AAPL", D("190.00"))


async def test_halting_from_the_console_refuses_the_next_order_and_shows_everywhere(
    stack: Stack, console: tuple[Page, httpx.AsyncClient]
) -> None:
    page, http = console
    await stack.venue.set_mid("AAPL", D("190.00"))
    await page.sign_in("t-ops")
    await page.open("trading")
    await page.wait("trading page", lambda d: d.find_elements(By.ID, "set-state"))
    try:
        await page.submit_form("set-state", {"scope": "GLOBAL", "state": "HALTED", "reason": "console test"})
        await page.wait(
            "halted in the header",
            lambda d: d.find_element(By.ID, "global-state").get_attribute("data-state") == "HALTED",
        )
        await page.wait("halted in the table", lambda d: "HALTED" in d.find_element(By.ID, "states").text)
        await page.shot("trading-state-halted")
        r = await _post_order(stack, http)
        assert r.status_code == 422 and "HALT" in r.text, r.text
        # Another page of the console shows it too.
        await page.open("positions")
        await page.wait("positions", lambda d: "Positions" in d.find_element(By.ID, "page").text)
        assert await page.run(lambda d: d.find_element(By.ID, "global-state").get_attribute("data-state")) == "HALTED"
        await page.shot("positions")
    finally:
        r = await http.post(
            "/api/v1/operator/trading-state",
            json={"scope": "GLOBAL", "state": "ACTIVE", "reason": "console test over"},
            headers=_as("t-ops"),
        )
        assert r.status_code == 200, r.text


async def test_cancel_all_from_the_console_empties_the_book(
    stack: Stack, console: tuple[Page, httpx.AsyncClient]
) -> None:
    page, http = console
    await stack.venue.set_mid("AAPL", D("190.00"))
    client = unique("desk")
    ids = []
    for qty in (5, 6):
        r = await _post_order(stack, http, clientId=client, qty=qty, type="LIMIT", price="150.00", timeInForce="GTC")
        assert r.status_code == 201, r.text
        ids.append(r.json()["internalOrderId"])
    await page.sign_in("t-ops")
    await page.open("trading")
    await page.wait("trading page", lambda d: d.find_elements(By.ID, "cancel-all"))
    await page.submit_form("cancel-all", {"scope": "client", "value": client, "reason": "console cancel-all"})
    async with asyncio.timeout(30):
        while True:
            r = await http.get("/api/v1/orders", params={"clientId": client}, headers=_as("t-ops"))
            if {o["status"] for o in r.json()["data"]} == {"CANCELED"}:
                break
            await asyncio.sleep(0.1)
    await page.open("blotter")
    await page.wait(
        "the blotter", lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-id='{ids[0]}'][data-status=CANCELED]")
    )
    await page.shot("blotter-after-cancel-all")


async def test_a_traders_login_shows_no_risk_edit_controls(console: tuple[Page, httpx.AsyncClient]) -> None:
    page, _ = console
    await page.sign_in("t-desk")
    await page.open("risk")
    await page.wait("risk page", lambda d: "Risk" in d.find_element(By.ID, "page").text)
    assert not await page.run(lambda d: d.find_elements(By.CSS_SELECTOR, "#policy-edit, textarea"))
    await page.shot("risk-trader")
    # The risk role gets the editor; an auditor reads the policy without it.
    await page.run(lambda d: d.execute_script("sessionStorage.clear()"))
    await page.sign_in("t-ops")
    await page.open("risk")
    await page.wait("the editor", lambda d: d.find_elements(By.CSS_SELECTOR, "#policy-edit textarea"))
    await page.shot("risk-editor")
    await page.run(lambda d: d.execute_script("sessionStorage.clear()"))
    await page.sign_in("t-audit")
    await page.open("risk")
    await page.wait("the policy", lambda d: d.find_elements(By.ID, "policy-view"))
    assert not await page.run(lambda d: d.find_elements(By.CSS_SELECTOR, "#policy-edit"))


async def _resolve_in_page(page: Page, selector: str, reason: str) -> None:
    def go(d: WebDriver) -> None:
        Page.click(d, f"{selector} button.resolve")
        alert = WebDriverWait(d, 10).until(lambda d: d.switch_to.alert)
        alert.send_keys(reason)
        alert.accept()

    await page.run(go)


async def test_breaks_and_unmatched_reports_are_resolved_from_the_console_and_shown_on_the_order(
    stack: Stack, console: tuple[Page, httpx.AsyncClient]
) -> None:
    page, http = console
    exec_id = unique("stray")
    async with stack.pool.connection() as conn:
        order = await decided(conn, client_id=unique("desk"), account=unique("acct"))
        await add_break(conn, order_id=order.order_id, broker="paper", kind="FILL_MISMATCH", detail="venue 5, ledger 4")
        [brk] = await list_breaks(conn, scope=Scope.everything(), order_id=order.order_id)
        await add_unmatched_report(
            conn, broker="paper", exec_id=exec_id, cl_ord_id="ghost-1", reason="no order took it", report={}
        )
    await page.sign_in("t-ops")
    await page.open("breaks")
    row = f"tr[data-break='{brk['id']}']"
    await page.wait("the open break", lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button.resolve"))
    await page.wait("the unmatched report", lambda d: exec_id in d.find_element(By.ID, "unmatched").text)
    # Live: a break booked while the page is open appears without a reload (the stream announces it).
    async with stack.pool.connection() as conn:
        await add_break(conn, order_id=order.order_id, broker="paper", kind="POSITION", detail="live one")
    await page.wait("the live break", lambda d: "live one" in d.find_element(By.ID, "page").text)
    await page.shot("breaks-open")
    await _resolve_in_page(page, row, "venue confirmed 4")
    await page.wait("resolved", lambda d: f"Resolved break #{brk['id']}" in d.find_element(By.ID, "banner").text)
    await page.wait("gone from the open ones", lambda d: not d.find_elements(By.CSS_SELECTOR, row))
    r = await http.get("/api/v1/breaks", params={"orderId": order.order_id, "status": "resolved"}, headers=_as("t-ops"))
    [done] = r.json()["data"]
    assert (done["id"], done["resolvedBy"], done["resolution"]) == (brk["id"], "ops", "venue confirmed 4")
    [stray] = [
        u
        for u in (await http.get("/api/v1/unmatched-reports", headers=_as("t-ops"))).json()["data"]
        if u["execId"] == exec_id
    ]
    unmatched_row = f"tr[data-unmatched='{stray['id']}']"
    await _resolve_in_page(page, unmatched_row, "a venue test report")
    await page.wait("unmatched resolved", lambda d: not d.find_elements(By.CSS_SELECTOR, unmatched_row))
    await page.run(
        lambda d: d.execute_script(
            "const s = document.querySelector('#break-filter select'); s.value = 'all';"
            " s.dispatchEvent(new Event('change'))"
        )
    )
    await page.wait("the resolution", lambda d: "venue confirmed 4" in d.find_element(By.CSS_SELECTOR, row).text)
    await page.wait(
        "the unmatched resolution",
        lambda d: "a venue test report" in d.find_element(By.CSS_SELECTOR, unmatched_row).text,
    )
    await page.shot("breaks-resolved")
    # The order page lists the order's breaks, resolved or not.
    await page.open(f"order/{order.order_id}")
    await page.wait("the order's breaks", lambda d: "venue confirmed 4" in d.find_element(By.ID, "page").text)
    assert "live one" in await page.text("table.breaks")
    await page.shot("order-page-breaks")
    # An auditor reads breaks but gets no resolve button.
    await page.run(lambda d: d.execute_script("sessionStorage.clear()"))
    await page.sign_in("t-audit")
    await page.open("breaks")
    await page.wait("breaks as auditor", lambda d: d.find_elements(By.CSS_SELECTOR, "table.breaks"))
    assert not await page.run(lambda d: d.find_elements(By.CSS_SELECTOR, "button.resolve"))


async def test_a_break_is_acknowledged_from_the_console_and_reconciliation_runs_are_listed(
    stack: Stack, console: tuple[Page, httpx.AsyncClient]
) -> None:
    page, http = console
    run = f"reconcile-paper-scheduled-{unique('run')}"
    async with stack.pool.connection() as conn:
        order = await decided(conn, client_id=unique("desk"), account=unique("acct"))
        await add_break(conn, order_id=order.order_id, broker="paper", kind="ORDER_NOT_AT_BROKER", detail="gone")
        [brk] = await list_breaks(conn, scope=Scope.everything(), order_id=order.order_id)
        await record_run(
            conn,
            workflow_id=run,
            run_id="r1",
            broker="paper",
            day=datetime.now(UTC).date(),
            started_at=datetime.now(UTC),
            compared=["positions", "fills", "orders"],
            counts={"ORDER_NOT_AT_BROKER": 1, "POSITION_DRIFT": 0},
            new_breaks=1,
            differences=[{"kind": "ORDER_NOT_AT_BROKER", "ref": order.order_id, "breakId": brk["id"], "new": True}],
        )
    await page.sign_in("t-ops")
    await page.open("breaks")
    row = f"tr[data-break='{brk['id']}']"
    await page.wait("the run", lambda d: d.find_elements(By.CSS_SELECTOR, f"#reconciliations tr[data-run='{run}']"))
    runs = await page.text(f"tr[data-run='{run}']")
    assert "ORDER_NOT_AT_BROKER 1" in runs and "POSITION_DRIFT" not in runs

    def acknowledge(d: WebDriver) -> None:
        Page.click(d, f"{row} button.acknowledge")
        alert = WebDriverWait(d, 10).until(lambda d: d.switch_to.alert)
        alert.send_keys("asking the venue")
        alert.accept()

    await page.run(acknowledge)
    done = f"Acknowledged break #{brk['id']}"
    await page.wait("acknowledged", lambda d: done in d.find_element(By.ID, "banner").text)
    await page.wait("its note", lambda d: "asking the venue" in d.find_element(By.CSS_SELECTOR, row).text)
    text = await page.text(row)
    assert "ACKNOWLEDGED" in text
    assert not await page.run(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button.acknowledge"))
    assert await page.run(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button.resolve"))
    r = await http.get("/api/v1/breaks", params={"orderId": order.order_id}, headers=_as("t-ops"))
    [b] = r.json()["data"]
    assert (b["acknowledgedBy"], b["acknowledgement"], b["resolvedAt"]) == ("ops", "asking the venue", None)
    await page.shot("breaks-acknowledged-and-runs")


async def test_a_stream_event_that_changes_nothing_shown_leaves_the_breaks_page_as_it_is(
    stack: Stack, console: tuple[Page, httpx.AsyncClient]
) -> None:
    # Re-rendering on every break event took the button from under a click (the CI's stale element): an
    # event after which the page would show the same leaves its elements in place.
    page, _ = console
    async with stack.pool.connection() as conn:
        order = await decided(conn, client_id=unique("desk"), account=unique("acct"))
        await add_break(conn, order_id=order.order_id, broker="paper", kind="ORDER_NOT_AT_BROKER", detail="kept")
        [brk] = await list_breaks(conn, scope=Scope.everything(), order_id=order.order_id)
    await page.sign_in("t-ops")
    await page.open("breaks")
    row = f"tr[data-break='{brk['id']}']"
    await page.wait("the break", lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button.acknowledge"))
    await page.run(
        lambda d: d.execute_script(f'performance.clearResourceTimings(); document.querySelector("{row}").__same = true')
    )
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT stream_append('break', 'BREAK_ACKNOWLEDGED', %s, NULL, NULL, NULL, 'paper', '{}'::jsonb) AS seq",
            (order.order_id,),
        )
        row_ = await cur.fetchone()
        assert row_ is not None
        seq = row_["seq"]
    # The page took the event and read the breaks again (the fetch is over) ...
    await page.wait("the event", lambda d: d.execute_script("return state.since") >= seq)
    await page.wait(
        "the page's reload",
        lambda d: d.execute_script(
            "return performance.getEntriesByType('resource')"
            ".some((e) => e.name.includes('/api/v1/reconciliations') && e.responseEnd > 0)"
        ),
    )
    await asyncio.sleep(0.5)  # ... and would have rendered by now: the same row, not a copy
    assert await page.run(lambda d: d.execute_script(f'return document.querySelector("{row}").__same === true'))
    # A change is still shown.
    async with stack.pool.connection() as conn:
        await add_break(conn, order_id=order.order_id, broker="paper", kind="POSITION", detail="another one")
    await page.wait("the new break", lambda d: "another one" in d.find_element(By.ID, "page").text)


async def test_broker_health_shows_sessions_terminals_and_quote_sources(
    stack: Stack, console: tuple[Page, httpx.AsyncClient]
) -> None:
    page, _ = console
    fix, alpaca, account = unique("fix"), unique("alpaca"), unique("xm")
    async with stack.pool.connection() as conn:
        await record_session(conn, broker=fix, session="FIX.4.4:EXODUS->VENUE", logged_on=True, detail="logged on")
        await record_session(conn, broker=alpaca, session="https://paper-api", logged_on=False, detail="stream dropped")
        await heartbeat(conn, alpaca, last_call_at=datetime.now(UTC))
        await register_mt5_account(conn, account, 30.0)
        await conn.execute(
            "UPDATE mt5_accounts SET connected = true, last_heartbeat_at = now(), login = 5012345,"
            " server = 'XMGlobal-MT5 2', ea_version = '1.0' WHERE account = %s",
            (account,),
        )
    await stack.venue.set_mid("AAPL", D("190.00"))
    await page.sign_in("t-desk")
    await page.open("brokers")
    await page.wait(
        "the FIX session", lambda d: "UP" in d.find_element(By.CSS_SELECTOR, f"tr[data-broker='{fix}']").text
    )
    alpaca_row = await page.text(f"tr[data-broker='{alpaca}']")
    assert "DOWN" in alpaca_row and "stream dropped" in alpaca_row and "ago" in alpaca_row.split("stream dropped")[1]
    terminal = await page.text(f"tr[data-account='{account}']")
    assert "UP" in terminal and "5012345" in terminal
    paper = await page.text("tr[data-source='paper']")
    assert paper.split()[1] in ("OK", "STALE")
    await page.shot("broker-health")
