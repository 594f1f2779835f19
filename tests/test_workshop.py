"""Workshop mode on the real local platform: a room, three learners with labs of their own, isolation on every
route, the instructor's grid and actions, exports, and a restart that brings the room and the labs back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.store import LearnerRow, Store, code_matches, hash_code
from dashboard.web import create_app
from dashboard.workshop import JoinLimiter, TooManyAttempts, check_name, grid_csv, slug
from tests.redis_helpers import wait_until

TOKEN = "instructor-token-for-tests"
INSTRUCTOR = {"Authorization": f"Bearer {TOKEN}", "HX-Request": "true"}
HX = {"HX-Request": "true"}


def workshop_settings(tmp_path: Path) -> Settings:
    return Settings(
        workshop=True,
        token=TOKEN,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        frontend_port=0,
        sample_interval=0.2,
        max_learners=5,
        workshop_profile=True,
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(workshop_settings(tmp_path)), base_url="http://127.0.0.1:8000") as c:
        yield c


def open_room(client: TestClient) -> dict[str, Any]:
    response = client.post("/api/rooms", headers=INSTRUCTOR, json={"title": "Tuesday"})
    assert response.status_code == 201, response.text
    room: dict[str, Any] = response.json()
    return room


def join(client: TestClient, room: dict[str, Any], name: str, **extra: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Join as a learner; returns the answer and the headers that carry the learner's session cookie."""
    response = client.post(
        "/join", headers=HX, json={"room": room["id"], "code": room["join_code"], "name": name, **extra}
    )
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    secret = cookie.split(";", 1)[0]
    client.cookies.clear()
    return response.json(), {"Cookie": secret, **HX}


def first_page(client: TestClient, url: str, headers: dict[str, str]) -> str:
    """The learner's page once their lab is open (right after joining it may still be on its way: 503)."""
    page = client.get(url, headers=headers)
    for _ in range(300):  # at most about 30 s
        if page.status_code != 503:
            break
        assert "Your lab is being prepared." in page.text and page.headers["Retry-After"] == "2"
        assert '<meta http-equiv="refresh" content="2">' in page.text
        time.sleep(0.1)
        page = client.get(url, headers=headers)
    assert page.status_code == 200, page.text
    return page.text


def grid(client: TestClient, room: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/rooms/{room['id']}", headers=INSTRUCTOR).json()
    return body


def row(client: TestClient, room: dict[str, Any], lab: str) -> dict[str, Any]:
    return next(r for r in grid(client, room)["learners"] if r["id"] == lab)


def ready(client: TestClient, room: dict[str, Any], *labs: str) -> None:
    wait_until(
        lambda: all(row(client, room, lab)["provisioning"] == "ready" for lab in labs),
        timeout=30,
        what="the learners' labs to be provisioned",
    )


def step(client: TestClient, headers: dict[str, str], lab: str, step_id: str) -> dict[str, Any]:
    response = client.post(f"/labs/{lab}/api/steps/{step_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["state"] == "done", body
    return body


def test_a_room_of_three_learners_isolated_on_every_route(client: TestClient) -> None:
    room = open_room(client)
    ada, ada_h = join(client, room, "Ada Lovelace")
    first = first_page(client, ada["url"], ada_h)
    assert "rejoin code" in first
    bob, bob_h = join(client, room, "Bob")
    cy, cy_h = join(client, room, "Cy")
    assert ada["lab"].startswith(f"{room['id']}-ada-lovelace")
    ready(client, room, ada["lab"], bob["lab"], cy["lab"])

    # each learner reaches their own lab ...
    assert "Ada Lovelace" in first and TOKEN not in first
    assert "rejoin code" not in client.get(ada["url"], headers=ada_h).text  # shown once
    assert client.get("/", headers=ada_h, follow_redirects=False).headers["location"] == ada["url"]
    # ... and nobody else's: page, API, actions, live stream, guestbook proxy, logs, fragments, the default lab
    other = f"/labs/{bob['lab']}"
    for method, path in [
        ("GET", f"{other}/"),
        ("GET", f"{other}/api/lab"),
        ("POST", f"{other}/api/steps/leader"),
        ("POST", f"{other}/api/drills/delete-leader"),
        ("GET", f"{other}/events"),
        ("GET", f"{other}/guestbook/guestbook.php?cmd=get"),
        ("GET", f"{other}/api/logs/redis-leader"),
        ("GET", f"{other}/fragments/replication"),
        ("POST", f"{other}/api/load"),
        ("GET", "/api/lab"),
        ("POST", "/api/steps/leader"),
        ("GET", f"/api/rooms/{room['id']}"),
        ("POST", f"/api/rooms/{room['id']}/learners/{bob['lab']}/reset"),
    ]:
        answer = client.request(method, path, headers=ada_h)
        assert answer.status_code == 403, (method, path, answer.status_code)
        said = ("This lab belongs to someone else.", "Only the instructor can do this.")
        assert any(sentence in answer.text for sentence in said), (path, answer.text[:200])
        assert "Traceback" not in answer.text
    stranger = client.get(f"{other}/api/lab", headers=HX)
    assert stranger.status_code == 401 and stranger.json()["error"] == "Join the workshop first."
    assert client.get("/", follow_redirects=False).headers["location"] == "/join"

    # Ada does the lab; the instructor's grid shows it from the lab's real state
    for step_id in ("leader", "followers", "frontend", "expose"):
        step(client, ada_h, ada["lab"], step_id)
    ada_row = row(client, room, ada["lab"])
    assert {s: c["state"] for s, c in ada_row["cells"].items()} == dict.fromkeys(
        ("leader", "followers", "frontend", "expose"), "done"
    )
    assert ada_row["finished"] and ada_row["current_step"] is None
    assert len([p for p in client.get(f"/labs/{ada['lab']}/api/pods", headers=ada_h).json()]) == 4  # profile
    # her data stays hers: the entry she writes is not on Bob's nodes
    assert (
        client.get(
            f"/labs/{ada['lab']}/guestbook/guestbook.php?cmd=append&value=ada-was-here", headers=ada_h
        ).status_code
        == 200
    )

    # the instructor brings Bob to the end of step 2, then resets him; removes Cy
    client.post(f"/api/rooms/{room['id']}/learners/{bob['lab']}/bring", headers=INSTRUCTOR, json={"step": 2})
    bob_row = row(client, room, bob["lab"])
    assert bob_row["cells"]["leader"]["state"] == bob_row["cells"]["followers"]["state"] == "done"
    assert bob_row["current_step"] == "frontend"
    assert all(
        "ada-was-here" not in entries
        for entries in client.get(f"/labs/{bob['lab']}/api/replication", headers=bob_h).json()["entries"].values()
    )
    client.post(f"/api/rooms/{room['id']}/learners/{bob['lab']}/reset", headers=INSTRUCTOR)
    assert row(client, room, bob["lab"])["cells"]["leader"]["state"] == "pending"
    assert client.get(f"/labs/{bob['lab']}/api/pods", headers=bob_h).json() == []
    assert client.delete(f"/api/rooms/{room['id']}/learners/{cy['lab']}", headers=INSTRUCTOR).status_code == 200
    assert client.get(f"/labs/{cy['lab']}/api/lab", headers=cy_h).status_code == 401
    assert grid(client, room)["count"] == 2

    # broadcast, aggregates, exports
    client.post(f"/api/rooms/{room['id']}/broadcast", headers=INSTRUCTOR, json={"text": "Five minutes left"})
    assert "Five minutes left" in client.get(f"/labs/{bob['lab']}/fragments/notice", headers=bob_h).text
    summary = grid(client, room)["summary"]
    assert "1 done" in summary and "1 at step 1 (leader)" in summary
    csv = client.get(f"/api/rooms/{room['id']}/export.csv", headers=INSTRUCTOR).text
    assert csv.splitlines()[0].startswith("learner,name,leader,followers,frontend,expose") and "Ada Lovelace" in csv
    record = client.get(f"/api/rooms/{room['id']}/learners/{ada['lab']}", headers=INSTRUCTOR).json()
    assert [t["state"] for t in record["transitions"] if t["step"] == "leader"] == ["running", "done"]
    markdown = client.get(f"/api/rooms/{room['id']}/learners/{ada['lab']}/record.md", headers=INSTRUCTOR).text
    assert markdown.startswith("# Ada Lovelace") and "## Start the Redis leader — done" in markdown
    page = client.get(f"/rooms/{room['id']}", headers=INSTRUCTOR).text
    assert room["join_code"] in page and "<svg" in page and 'sse-connect="/rooms/' in page


def test_wrong_join_codes_are_rate_limited(client: TestClient) -> None:
    room = open_room(client)
    wrong = {"room": room["id"], "code": "WRONG1", "name": "Eve"}
    for _ in range(10):
        assert client.post("/join", headers=HX, json=wrong).status_code == 403
    limited = client.post("/join", headers=HX, json={**wrong, "code": room["join_code"]})
    assert limited.status_code == 429 and "Too many wrong codes" in limited.json()["error"]


def test_rejoin_with_the_personal_code_and_the_lock(client: TestClient, tmp_path: Path) -> None:
    room = open_room(client)
    first, first_h = join(client, room, "Dee")
    page = first_page(client, first["url"], first_h)
    rejoin = page.split('class="mono">', 1)[1].split("<", 1)[0]
    again = client.post("/join", headers=HX, json={"room": room["id"], "code": room["join_code"], "name": "dee"})
    assert again.status_code == 403 and "already joined" in again.json()["error"]
    back = client.post(
        "/join", headers=HX, json={"room": room["id"], "code": room["join_code"], "name": "Dee", "rejoin_code": rejoin}
    )
    assert back.status_code == 200 and back.json()["lab"] == first["lab"]
    client.cookies.clear()
    assert client.get(first["url"], headers=first_h).status_code == 401  # the old browser's session is replaced
    client.post(f"/api/rooms/{room['id']}/lock", headers=INSTRUCTOR, json={"locked": True})
    locked = client.post("/join", headers=HX, json={"room": room["id"], "code": room["join_code"], "name": "Late"})
    assert locked.status_code == 403 and locked.json()["error"] == "The room is locked: no new learners."


def test_a_restarted_dashboard_brings_the_room_and_the_labs_back(tmp_path: Path) -> None:
    settings = workshop_settings(tmp_path)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        room = open_room(client)
        ada, ada_h = join(client, room, "Ada")
        ready(client, room, ada["lab"])
        for step_id in ("leader", "followers"):
            step(client, ada_h, ada["lab"], step_id)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        rooms = client.get("/api/rooms", headers=INSTRUCTOR).json()
        assert [r["id"] for r in rooms] == [room["id"]]
        assert rooms[0]["join_code"] != room["join_code"]  # codes are stored hashed: a new one after a restart
        wait_until(
            lambda: row(client, room, ada["lab"])["cells"]["followers"]["state"] == "done",
            timeout=60,
            what="Ada's lab rebuilt up to the followers step",
        )
        assert client.get(f"/labs/{ada['lab']}/api/lab", headers=ada_h).status_code == 200  # same cookie works
        assert len(client.get(f"/labs/{ada['lab']}/api/pods", headers=ada_h).json()) == 3


def test_workshop_pieces_on_plain_values(tmp_path: Path) -> None:
    assert slug("Zoë Ångström!") == "zoe-angstrom" and slug("李") == "learner"
    assert check_name("  Ada   Lovelace ") == "Ada Lovelace"
    for bad in ("", " ", "x" * 41, "bell\x07"):
        with pytest.raises(Exception, match="display name"):
            check_name(bad)
    stored = hash_code("abc123")
    assert code_matches("ABC123", stored) and not code_matches("ABC124", stored) and "ABC123" not in stored
    limiter = JoinLimiter(attempts=2, window=60)
    limiter.wrong("a", now=0)
    limiter.wrong("a", now=1)
    with pytest.raises(TooManyAttempts):
        limiter.check("a", now=2)
    limiter.check("a", now=61.5)  # the first wrong code has aged out
    limiter.check("b", now=2)
    grid_row = {"id": "x", "name": "=cmd()", "cells": {"leader": {"state": "done"}}, "current_step": None}
    text = grid_csv(
        {
            "steps": [{"id": "leader"}],
            "learners": [{**grid_row, "seconds_on_step": None, "drills_done": 0, "last_error": None}],
        }
    )
    assert "'=cmd()" in text  # no formula injection in a spreadsheet
    store = Store(tmp_path / "db.sqlite3")
    store.add_room("r", "Room", hash_code("JOIN12"))
    store.add_learner(LearnerRow("x", "r", "Ada", "h", hash_code("REJOIN12"), 1.0, None))
    assert store.name_taken("r", "ADA") and [row.name for row in store.learners("r")] == ["Ada"]
    store.close()


def test_not_in_workshop_mode_the_room_routes_say_so(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path / "run", data_dir=tmp_path / "data")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        answer = client.get("/api/rooms")
        assert answer.status_code == 404 and answer.json()["hint"].startswith("Start it with --workshop")
        assert isinstance(client.get("/api/lab").json(), dict)


def test_the_room_pre_flight_says_whether_the_labs_fit_this_machine(client: TestClient) -> None:
    from dashboard.platforms.local.preflight import room_fit

    report = client.get("/api/preflight", headers=INSTRUCTOR).json()
    room = report["room"]
    assert room["learners"] == 5 and room["per_learner"] == {"memory_mb": 74, "ports": 5, "processes": 4}
    assert room["fits"] is True and room["message"].startswith("5 learners fit")
    assert "Pre-flight for the room: 5 learners fit" in client.get("/rooms", headers=INSTRUCTOR).text
    page = client.get("/preflight", headers=INSTRUCTOR).text  # the same sentence, on the pre-flight page too
    assert 'id="h-room"' in page and '<p class="message" id="room-fit">5 learners fit: about 370 MB of the' in page
    assert '<dt>A learner</dt><dd class="mono">74 MB of memory, 5 ports, 4 processes</dd>' in page
    small = room_fit(30, 3, available_mb=1000, free_ports=28000)
    assert small["fits"] is False and small["most_learners"] == 6
    assert small["message"] == (
        "30 learners do not fit this machine: too little memory (4500 MB needed, 1000 MB available); at most 6 fit "
        "(--workshop-profile runs 1 frontend instead of 3)."
    )
