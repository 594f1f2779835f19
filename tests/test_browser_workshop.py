"""Workshop mode in a real browser: the instructor opens a room, two learners join in two browser contexts (phones),
one completes the lab, the instructor's grid shows it live, the instructor resets the other. Every screen of the
room is screenshotted and checked for horizontal overflow: the learner page at 390 px, the instructor grid and the
projector views at 1280×720."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDashboard

pytestmark = pytest.mark.browser
TOKEN = "instructor-token-browser-test"
PHONE = {"width": 390, "height": 844}
PROJECTOR = {"width": 1280, "height": 720}


def no_horizontal_overflow(page: Any, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url} is {scroll} px wide at {width} px"


def test_an_instructor_runs_a_room_of_two_learners(
    browser: Any, start_dashboard: StartDashboard, tmp_path: Path
) -> None:
    dash = start_dashboard(
        None, "--workshop", "--token", TOKEN, "--data-dir", str(tmp_path / "data"), "--workshop-profile"
    )
    instructor = browser.new_context(viewport=PROJECTOR)
    grid = instructor.new_page()
    grid.on("dialog", lambda dialog: dialog.accept())
    grid.goto(f"{dash.url}/rooms?token={TOKEN}")
    grid.click("#open-room button[type=submit]")
    grid.wait_for_url(re.compile(r"/rooms/ws[a-z]\d{3}$"))
    room_id = grid.url.rsplit("/", 1)[1]
    code = grid.locator(".join-code").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-9]{6}", code) and grid.locator(".qr svg").count() == 1
    grid.wait_for_selector("#live.open")

    learners = {}
    for name in ("Ada", "Bob"):
        context = browser.new_context(viewport=PHONE)
        page = context.new_page()
        page.goto(f"{dash.url}/join")
        page.fill("input[name=code]", code.lower())  # codes are not case-sensitive
        page.fill("input[name=name]", name)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(rf"/labs/{room_id}-{name.lower()}/$"))
        assert "rejoin code" in page.locator(".welcome").inner_text()
        page.wait_for_selector("#live.open")
        learners[name] = page
    ada, bob = learners["Ada"], learners["Bob"]
    ada.screenshot(path=str(tmp_path / "learner-390.png"), full_page=True)
    no_horizontal_overflow(ada, PHONE["width"])
    grid.wait_for_selector(f"#learner-{room_id}-bob")  # joins appear on the grid live

    for step in ("leader", "followers", "frontend", "expose"):
        ada.click(f"#run-{step}")
        ada.wait_for_selector(f"#step-{step}.state-done", timeout=30_000)
    ada_row = f"#learner-{room_id}-ada"
    grid.wait_for_function(
        f"document.querySelectorAll('{ada_row} td.cell.state-done').length === 4", timeout=10_000
    )  # live: no reload
    assert "done" in grid.locator(ada_row).inner_text()
    grid.screenshot(path=str(tmp_path / "instructor-1280.png"), full_page=True)
    no_horizontal_overflow(grid, PROJECTOR["width"])

    bob.click("#run-leader")
    bob.wait_for_selector("#step-leader.state-done", timeout=30_000)
    bob_row = f"#learner-{room_id}-bob"
    grid.wait_for_selector(f"{bob_row} td.cell.state-done")
    grid.click(f"#reset-{room_id}-bob")
    grid.wait_for_function(f"document.querySelectorAll('{bob_row} td.cell.state-done').length === 0")
    bob.wait_for_selector("#step-leader.state-pending", timeout=10_000)  # Bob's own page follows live
    assert ada.locator("#step-expose.state-done").count() == 1  # Ada is untouched

    look = instructor.new_page()  # the grid's link: a read-only look at a learner's lab
    look.goto(f"{dash.url}/labs/{room_id}-ada/?look=1")
    look.wait_for_selector("#live.open")
    changes: list[str] = []
    look.on("request", lambda r: changes.append(r.url) if r.method != "GET" else None)
    look.click("#run-leader")
    look.wait_for_timeout(500)
    assert changes == [] and "read-only look" in look.locator(".notice").first.inner_text()

    projector = instructor.new_page()
    projector.goto(f"{dash.url}/rooms/{room_id}/present")
    assert projector.locator(".join-code").inner_text().strip() == code
    projector.screenshot(path=str(tmp_path / "projector-1280.png"))
    no_horizontal_overflow(projector, PROJECTOR["width"])
    present = instructor.new_page()
    present.goto(f"{dash.url}/?view=present&scale=1.5")
    present.wait_for_selector("#live.open")
    present.screenshot(path=str(tmp_path / "present-1280-scale-1.5.png"))
    no_horizontal_overflow(present, PROJECTOR["width"])
    for name in ("Ada", "Bob"):
        learners[name].context.close()
    instructor.close()
