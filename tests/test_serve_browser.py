"""`drdeck serve` in a real browser: headless Chromium opens the address drdeck printed and
watches a step turn from running to succeeded while a real run proceeds, without a reload.
The screenshots are kept in test-artefacts/ ($DRDECK_TEST_ARTEFACTS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.config import load_config

from browser_support import browser, chromium_path
from cli_support import drdeck_in_background, running_id, stop
from serve_support import TOKEN, serving

BOOK = """[runbook]
name = "browser-drill"
title = "A drill followed from a browser"
rto = "1h"

[[steps]]
id = "gate"
title = "Wait for the go file"
action = "shell"
with = {{ command = "echo waiting at the gate; until [ -f '{go}' ]; do sleep 0.05; done" }}
checks = [{{ name = "the gate opened", command = "echo open", expect = {{ contains = "open" }} }}]

[[steps]]
id = "after"
title = "What follows"
action = "shell"
with = {{ command = "echo 'after the gate <b>not markup</b>'" }}
"""

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="needs chromium (make test installs it)")


def test_a_browser_follows_a_run_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, config = tmp_path / "state", tmp_path / "drdeck.toml"
    config.write_text("")
    monkeypatch.setenv("DRDECK_STATE_DIR", str(state))
    go = tmp_path / "go"
    book = tmp_path / "book.toml"
    book.write_text(BOOK.format(go=go))
    run = drdeck_in_background("--config", str(config), "run", str(book), "--headless",
                               state_dir=state, log=tmp_path / "run.log")
    try:
        run_id = running_id(load_config(config))
        with serving(state, config) as served, browser() as new_page:
            page = new_page()
            # the list first, as a person opening the printed address sees it
            page.go(f"{served.base}?token={TOKEN}")
            page.wait(f"!!document.querySelector('tr[data-run=\"{run_id}\"]')", "the run listed")
            assert page.value("location.search") == ""  # the token left the address
            page.screenshot("serve-list.png")
            page.go(f"{served.base}runs/{run_id}")
            status = ("(document.querySelector('li[data-step=\"gate\"]') || {dataset: {}})"
                      ".dataset.status")
            page.wait(f"{status} === 'running'", "the gate step running")
            page.wait("document.getElementById('link').dataset.state === 'live'", "live")
            page.value("window.sameDocument = true")  # gone if the page reloads
            assert "waiting at the gate" in page.value("document.getElementById('output')"
                                                       ".innerText")
            page.screenshot("serve-run-running.png")
            go.touch()
            page.wait(f"{status} === 'succeeded'", "the gate step succeeded")
            page.wait("document.getElementById('run-status').textContent === 'succeeded'",
                      "the run succeeded")
            assert page.value("window.sameDocument") is True  # no reload on the way
            shown = page.value("document.body.innerText")
            assert "the gate opened" in shown
            assert "after the gate <b>not markup</b>" in shown  # text, never markup
            assert page.value("document.querySelectorAll('#output b').length") == 0
            assert "RTO" in page.value("document.getElementById('clock').textContent")
            page.screenshot("serve-run-succeeded.png")
        assert run.wait(timeout=30) == 0
    finally:
        stop(run)
