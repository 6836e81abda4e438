"""The dashboard in real headless Chromium: approve a waiting run, watch it succeed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import baton
from baton.core.roles import Role
from baton.server.api import create_api
from conftest import wait_until
from serverkit import serving

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` does it as root)",
)


def approval_app(path: Path) -> baton.App:
    app = baton.App(path / "baton.db", poll_interval=0.05)

    @app.step(name="prepare")
    def prepare(order: dict) -> str:
        return f"prepared {order['id']}"

    @app.workflow(name="purchase")
    def purchase(order: dict) -> dict:
        note = prepare(order)
        decision = baton.wait_for_approval("manager", timeout=600)
        return {"note": note, "approved": decision.approved, "by": decision.by}

    return app


def test_approve_in_the_browser_and_see_the_run_succeed(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    app = approval_app(tmp_path)
    tokens = [SimpleNamespace(name="ann", token="ann-operator-token", role=Role.OPERATOR)]
    try:
        run = app.start("purchase", {"id": "po-7"})
        other = app.start("purchase", {"id": "po-8"})
        live = app.start("purchase", {"id": "po-9"})
        for handle in (run, other, live):
            wait_until(lambda h=handle: app.approvals("PENDING", h.id), 10, "the approval")
        with serving(create_api(app, tokens=tokens)) as url, sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(15_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))

                # with tokens, the dashboard sends the browser to log in first
                page.goto(f"{url}/")
                expect(page).to_have_url(re.compile(r"/login\?next="))
                page.fill("input[name=token]", "ann-operator-token")
                page.click("button[type=submit]")
                expect(page).to_have_url(f"{url}/")
                expect(page.locator("#runs")).to_contain_text(run.id)
                expect(page.locator(".who")).to_contain_text("ann · operator")

                page.click("nav >> text=Approvals")
                expect(page).to_have_url(f"{url}/approvals")
                row = page.locator(f"tr.approval[data-run='{run.id}']")
                expect(row).to_contain_text("manager")
                row.locator("input[name=comment]").fill("looks fine")
                row.locator("button.approve").click()
                expect(page.locator("#flash")).to_contain_text("Approved")
                # the list reloads itself: the decided approval leaves, the other stays
                expect(row).to_have_count(0)
                expect(page.locator(f"tr.approval[data-run='{other.id}']")).to_have_count(1)

                # deciding it again (an old tab's button) shows a message, not a traceback
                page.goto(f"{url}/approvals")
                stale = page.locator(f"tr.approval[data-run='{other.id}']")
                app.reject(other.id, "manager", by="ann")
                stale.locator("button.approve").click()
                expect(page.locator("#flash .flash.bad")).to_contain_text("Approval closed")

                page.goto(f"{url}/runs/{run.id}")
                expect(page.locator("#run-status")).to_have_text("SUCCEEDED", timeout=20_000)
                expect(page.locator("#run")).to_contain_text("prepare")
                expect(page.locator("#run")).to_contain_text("looks fine")

                # a run's page follows it live: decided elsewhere, it turns SUCCEEDED here
                page.goto(f"{url}/runs/{live.id}")
                expect(page.locator("#run-status")).to_have_text("WAITING")
                app.approve(live.id, "manager", by="ann")
                expect(page.locator("#run-status")).to_have_text("SUCCEEDED", timeout=20_000)
                assert not errors, errors
            finally:
                browser.close()
        assert run.result(timeout=10) == {"note": "prepared po-7", "approved": True, "by": "ann"}
        decided = app.approvals(None, run.id)[0]
        assert (decided.status, decided.comment) == ("APPROVED", "looks fine")
    finally:
        app.shutdown(timeout=5)
