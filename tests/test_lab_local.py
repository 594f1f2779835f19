"""The five steps through the JSON API on the real local platform: checks, idempotence, concurrent clicks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.web import create_app

HX = {"HX-Request": "true"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(run_dir=tmp_path / "run", frontend_port=0, sample_interval=0.1)
    # `with`: the app's loop lives in one thread for the whole test (pods die with the thread that started them)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


def run(client: TestClient, step: str) -> dict[str, object]:
    response = client.post(f"/api/steps/{step}", headers=HX)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_the_checks_say_what_they_proved(client: TestClient) -> None:
    leader = run(client, "leader")
    assert leader["state"] == "done" and "answers PING with role master" in str(leader["message"])
    followers = run(client, "followers")
    assert followers["state"] == "done" and "master_link_status:up" in str(followers["message"])
    frontend = run(client, "frontend")
    assert frontend["state"] == "done"
    message = str(frontend["message"])
    assert "3 frontend replicas answer the guestbook API" in message
    assert "CLIENT LIST shows them writing to redis-leader-" in message and "reading from redis-follower-" in message
    expose = run(client, "expose")
    assert expose["state"] == "done"
    url = client.get("/api/lab").json()["frontend_url"]
    assert url and url.startswith("http://127.0.0.1:") and url in str(expose["message"])


def test_running_a_step_twice_is_not_an_error_and_starts_nothing_new(client: TestClient) -> None:
    run(client, "leader")
    before = {p["name"] for p in client.get("/api/pods").json()}
    again = run(client, "leader")
    assert again["state"] == "done"
    assert again["output"] == ["deployment.apps/redis-leader unchanged", "service/redis-leader unchanged"]
    assert {p["name"] for p in client.get("/api/pods").json()} == before


def test_concurrent_clicks_from_two_browsers_cannot_corrupt_the_state(client: TestClient) -> None:
    run(client, "leader")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(client, "followers"), range(4)))
    assert all(r["state"] == "done" for r in results)
    pods = client.get("/api/pods").json()
    assert sorted(p["component"] for p in pods) == ["redis-follower", "redis-follower", "redis-leader"]
    outputs = [r["output"] for r in results]
    assert outputs.count(["deployment.apps/redis-follower created", "service/redis-follower created"]) == 1
    assert outputs.count(["deployment.apps/redis-follower unchanged", "service/redis-follower unchanged"]) == 3


def test_cleanup_resets_the_steps_and_leaves_nothing(client: TestClient, tmp_path: Path) -> None:
    for step in ("leader", "followers", "frontend", "expose"):
        run(client, step)
    cleanup = run(client, "cleanup")
    assert cleanup["state"] == "done" and "No resources found" in str(cleanup["message"])
    lab = client.get("/api/lab").json()
    assert [s["state"] for s in lab["steps"]] == ["pending", "pending", "pending", "pending", "done"]
    assert lab["frontend_url"] is None
    assert client.get("/api/pods").json() == []
    assert not (tmp_path / "run").exists() or list((tmp_path / "run").iterdir()) == []
    # and the prerequisite chain starts again from the leader
    assert client.post("/api/steps/followers", headers=HX).status_code == 409


def test_the_embedded_guestbook_works_through_the_dashboard(client: TestClient) -> None:
    for step in ("leader", "followers", "frontend", "expose"):
        run(client, step)
    page = client.get("/guestbook/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    entry = 'through the dashboard, with "quotes" & #+ ✓'
    written = client.post(
        "/guestbook/guestbook.php",
        data={"cmd": "append", "value": entry},
        headers={"Origin": "http://127.0.0.1:8000"},
    )
    assert written.status_code == 200 and written.json()["entries"] == [entry]
    # reads come from a follower: the entry shows there a moment later
    deadline = time.monotonic() + 5
    while client.get("/guestbook/guestbook.php?cmd=get").json()["entries"] != [entry]:
        assert time.monotonic() < deadline, "the entry never reached the follower the frontend reads from"
        time.sleep(0.01)


def test_rollout_status_on_the_local_platform(client: TestClient) -> None:
    platform = client.app.state.labs.get("default").platform  # type: ignore[attr-defined]
    assert client.portal is not None
    assert client.portal.call(platform.rollout_status, "redis-leader", "redis-leader") == (
        'deployment "redis-leader" does not exist'
    )
    run(client, "leader")
    assert client.portal.call(platform.rollout_status, "redis-leader", "redis-leader") is None
    assert client.portal.call(platform.rollout_status, "redis-follower", "redis-follower") == (
        'deployment "redis-follower" does not exist'
    )


def test_a_busy_expose_port_is_said_not_hidden(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings(run_dir=tmp_path / "run", frontend_port=port, sample_interval=0.1)
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
            for step in ("leader", "followers", "frontend"):
                run(c, step)
            expose = run(c, "expose")
            assert expose["state"] == "done"
            assert f"port {port} is in use" in str(expose["message"])
            lab = c.get("/api/lab").json()
            assert f"port {port} is in use" in lab["expose_note"]
            assert f":{port}/" not in lab["frontend_url"]
            assert f"port {port} is in use" in c.get("/fragments/guestbook").text
