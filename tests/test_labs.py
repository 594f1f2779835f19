"""Many labs in one process: two labs side by side on the real local platform keep everything apart.

The default lab is served at the top, a second one under `/labs/<id>/`; each has its own processes, ports, run
dir, data, live topics and background tasks, and closing one stops all of its processes and leaves the other
running.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.session import LabRegistry, check_lab_id, lab_settings
from dashboard.settings import Settings
from dashboard.web import create_app
from tests.redis_helpers import wait_until

HX = {"HX-Request": "true"}
SECOND = "/labs/second"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(run_dir=tmp_path / "run", frontend_port=0, sample_interval=0.1)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


def labs(client: TestClient) -> LabRegistry:
    registry: LabRegistry = client.app.state.labs  # type: ignore[attr-defined]
    return registry


def run(client: TestClient, base: str, step: str) -> dict[str, object]:
    response = client.post(f"{base}/api/steps/{step}", headers=HX)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert body["state"] == "done", body
    return body


def answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


def test_two_labs_in_one_process_keep_processes_ports_run_dirs_and_data_apart(client: TestClient) -> None:
    assert client.portal is not None
    second = client.portal.call(labs(client).open, "second")
    default = labs(client).get("default")
    assert second.settings.run_dir != default.settings.run_dir
    for step in ("leader", "followers", "frontend", "expose"):
        run(client, "", step)
        run(client, SECOND, step)

    default_nodes = client.portal.call(default.platform.redis_endpoints)
    second_nodes = client.portal.call(second.platform.redis_endpoints)
    assert len(default_nodes) == len(second_nodes) == 3
    assert not {(n.host, n.port) for n in default_nodes} & {(n.host, n.port) for n in second_nodes}
    default_url = client.get("/api/lab").json()["frontend_url"]
    second_url = client.get(f"{SECOND}/api/lab").json()["frontend_url"]
    assert default_url and second_url and default_url != second_url
    assert {p["name"] for p in client.get("/api/pods").json()}.isdisjoint(
        {p["name"] for p in client.get(f"{SECOND}/api/pods").json()}
    )

    # data: an entry written through the default lab's guestbook lands on its nodes only
    wrote = client.get("/guestbook/guestbook.php", params={"cmd": "append", "value": "only-in-default"})
    assert wrote.status_code == 200, wrote.text

    def replicated(base: str) -> dict[str, list[str]]:
        entries: dict[str, list[str]] = client.get(f"{base}/api/replication").json()["entries"]
        return entries

    wait_until(
        lambda: len(replicated("")) == 3 and all("only-in-default" in e for e in replicated("").values()),
        what="the entry on every node of the default lab",
    )
    assert all("only-in-default" not in e for e in replicated(SECOND).values())

    # live topics: a step in one lab moves only that lab's topics
    before = default.hub.versions["steps"]
    second_before = second.hub.versions["steps"]
    run(client, SECOND, "leader")
    assert second.hub.versions["steps"] > second_before
    assert default.hub.versions["steps"] == before

    # closing a lab stops all of its processes and leaves the other one running
    client.portal.call(labs(client).close, "second")
    assert "second" not in {s.id for s in labs(client)}
    wait_until(lambda: not any(answers((n.host, n.port)) for n in second_nodes), what="the second lab's Redis to stop")
    assert all(answers((n.host, n.port)) for n in default_nodes)
    assert client.get(f"{SECOND}/api/lab").status_code == 404
    run(client, "", "cleanup")


def test_each_lab_has_its_own_page_and_stream_and_unknown_labs_are_404(client: TestClient) -> None:
    assert client.portal is not None
    client.portal.call(labs(client).open, "second")
    page = client.get(f"{SECOND}/").text
    assert f'sse-connect="{SECOND}/events"' in page
    assert f'hx-post="{SECOND}/api/steps/leader"' in page
    assert 'hx-post="/api/steps/leader"' in client.get("/").text
    missing = client.get("/labs/nobody/api/lab")
    assert missing.status_code == 404 and missing.json()["error"] == "There is no lab called 'nobody'."
    assert client.post("/labs/nobody/api/steps/leader", headers=HX).status_code == 404


def test_lab_settings_give_every_other_lab_its_own_dir_port_and_namespace(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path / "run", frontend_port=8080, namespace="default")
    assert lab_settings(settings, "default") is settings
    other = lab_settings(settings, "room-ada")
    assert other.run_dir == tmp_path / "run-lab-room-ada" and other.frontend_port == 0
    assert other.namespace == "room-ada" and other.create_namespace is True
    assert other.sample_interval == 1.0 and settings.sample_interval == 0.5
    for bad in ("", "UPPER", "-dash", "a" * 41, "../etc", "a/b"):
        with pytest.raises(Exception, match="is not a valid lab id"):
            check_lab_id(bad)


def test_a_lab_nobody_watches_samples_every_5_s_and_a_viewer_brings_it_back_to_1_s(client: TestClient) -> None:
    from dashboard.session import LAB_IDLE_SAMPLE_INTERVAL, LAB_SAMPLE_INTERVAL

    assert client.portal is not None
    second = client.portal.call(labs(client).open, "second")
    assert LAB_IDLE_SAMPLE_INTERVAL == 5.0  # no page open, nothing running: every 4 to 6 s (spread at random)
    assert 4.0 <= second.sampler.current_interval() <= 6.0
    second.hub.viewers += 1  # what a live stream (/labs/second/events) counts while it is open
    assert second.sampler.current_interval() == LAB_SAMPLE_INTERVAL == 1.0
    second.hub.viewers -= 1
    assert 4.0 <= second.sampler.current_interval() <= 6.0
    assert labs(client).get("default").sampler.current_interval() == 0.1  # the default lab: as configured
