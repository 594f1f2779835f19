"""The failure drills, the probe, the write load, the lag history and the side-by-side logs, through the app.

The same tests on the local platform (real redis-server processes on loopback) and on a real Kubernetes cluster
(`k8s` marker, a throwaway namespace; Redis reached by pod IP, `--redis-access auto`), see
`tests/platform_labs.py`. One lab per platform for the module, driven through the JSON API in the order an
instructor would: the probe (per-follower ms and WAIT's count; on the local platform compared with an independent
observer: keyspace notifications on each follower, timestamped with the same monotonic clock), a write load
(every entry on every node), every drill (lag measured, resync kind observed, the leader's deletion shown as data
loss; on the cluster each drill's time is printed, `pytest -s`), the pods' real logs side by side and the lag
history with its marks. The contract pieces (409 before the main steps, `steps` unchanged) run on a fake.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from dashboard import drills
from dashboard.settings import Settings
from dashboard.web import create_app
from tests.fakes import FakePlatform
from tests.platform_labs import HX, PLATFORMS, Lab, open_lab
from tests.polling import wait_until

MAIN = ["leader", "followers", "frontend", "expose", "cleanup"]
REDIS_LINE = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d\.\d+ [.\-*#] ")
# entries per second and seconds: the cluster's pods (a bridge, containers) carry fewer writes than loopback
LOAD = {"local": (200, 1.5), "kubernetes": (40, 2.0)}


@pytest.fixture(scope="module", params=PLATFORMS)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One lab per platform for the module: leader, followers, frontend, exposed; cleaned up at the end."""
    if request.param == "local" and shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server); the drills need real Redis")
    with open_lab(request.param, tmp_path_factory.mktemp(f"drills-{request.param}"), step_timeout=30) as opened:
        opened.main_steps()
        wait_until(opened.in_sync, what="the leader and two followers in sync")
        yield opened
        cleanup = opened.step("cleanup")
        assert cleanup["state"] == "done", cleanup
        opened.pod_processes_gone()


# ----------------------------------------------------------------------------------------------- the contract


@pytest.fixture
def fake_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(run_dir=tmp_path / "run", sample_interval=0.1, step_timeout=0.3)
    app = create_app(settings, FakePlatform(step_timeout=settings.step_timeout))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        yield c


def test_lab_keeps_the_five_steps_and_lists_drills_apart(fake_client: TestClient) -> None:
    body = fake_client.get("/api/lab").json()
    assert [s["id"] for s in body["steps"]] == MAIN
    ids = [d["id"] for d in body["drills"]]
    assert ids == ["delete-follower", "network-blip", "pause-replication", "delete-leader", "scale-followers",
                   "scale-frontend"]  # fmt: skip
    for d in body["drills"]:
        assert d["optional"] is True and d["expect"] and d["state"] == "pending"
    leader = next(d for d in body["drills"] if d["id"] == "delete-leader")
    assert "lost" in leader["warning"]


def test_drill_before_the_main_steps_is_409_with_a_hint(fake_client: TestClient) -> None:
    r = fake_client.post("/api/drills/delete-leader", headers=HX)
    assert r.status_code == 409
    assert "followers step first" in r.json()["hint"]
    page = fake_client.post(
        "/api/drills/pause-replication", headers=HX | {"Accept": "text/html", "HX-Trigger": "run-pause-replication"}
    )
    assert page.status_code == 409 and "frontend step first" in page.text
    assert page.headers["HX-Retarget"] == "#run-pause-replication-error"


def test_unknown_drill_is_404_and_a_main_step_is_not_a_drill(fake_client: TestClient) -> None:
    assert fake_client.post("/api/drills/delete-everything", headers=HX).status_code == 404
    assert fake_client.post("/api/drills/leader", headers=HX).status_code == 404
    assert fake_client.post("/api/steps/delete-leader", headers=HX).status_code == 404


def test_load_bounds_and_probe_without_a_lab(fake_client: TestClient) -> None:
    r = fake_client.post("/api/load", json={"rate": 1000, "seconds": 5}, headers=HX)
    assert r.status_code == 400 and "500" in r.json()["hint"]
    r = fake_client.post("/api/load", json={"rate": 10, "seconds": 61}, headers=HX)
    assert r.status_code == 400
    r = fake_client.post("/api/probe", headers=HX)
    assert r.status_code == 409 and "leader" in r.json()["hint"]
    assert fake_client.post("/api/probe").status_code in (400, 403)  # not from the page, no token: refused


def test_views_and_permalinks(fake_client: TestClient) -> None:
    everything = fake_client.get("/").text
    for anchor in ("panel-steps", "panel-replication", "panel-lag", "panel-experiments", "panel-drills", "panel-logs"):
        assert f'id="{anchor}"' in everything
    assert 'id="step-leader"' in everything and 'id="step-delete-leader"' in everything
    repl = fake_client.get("/?view=replication&scale=1.5").text
    assert 'id="panel-steps"' not in repl and 'id="panel-pods"' not in repl
    assert 'id="panel-replication"' in repl and 'id="panel-drills"' in repl and "--scale: 1.5" in repl
    present = fake_client.get("/?view=present&scale=99").text
    assert "theme-present" in present and "--scale: 3.0" in present
    assert "theme-present" not in everything


# ---------------------------------------------------------------------------------- against real Redis, on both


def test_probe_times_each_follower_and_counts_wait_acks(lab: Lab) -> None:
    response = lab.client.post("/api/probe", headers=HX)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["all_arrived"] and result["followers"] == 2 and result["acknowledged"] == 2, result
    assert result["wait_error"] is None
    # the Python frontend appends; the upstream PHP one (on the cluster) has no append, so the probe used set
    assert result["append_supported"] is {"local": True, "kubernetes": False}[lab.platform], result
    followers = [n for n in result["nodes"] if n["role"] == "follower"]
    assert len(followers) == 2
    for node in followers:
        assert node["error"] is None and node["ms"] >= 0 and node["ms_after_leader"] >= 0, node
    assert result["max_follower_ms"] is not None and result["max_follower_ms"] < 2000
    assert lab.client.get("/api/probe").json()["entry"] == result["entry"]
    wait_until(lambda: all(result["entry"] in e for e in lab.replication()["entries"].values()), what="the probe entry")
    if lab.platform == "kubernetes":  # the cluster's own Redis pods, reached by pod IP
        redis_pods = {p.metadata.name for p in lab.cluster_pods() if p.metadata.labels.get("app") == "redis"}
        assert {n["name"] for n in result["nodes"]} == redis_pods
        assert lab.replication()["redis_access"]["using"] == "direct"


@pytest.mark.parametrize("lab", ["local"], indirect=True)  # the observer dials the followers' loopback ports
def test_probe_times_each_follower_like_an_independent_observer(lab: Lab) -> None:
    pods = lab.client.get("/api/pods").json()
    ports = {p["name"]: int(p["ip"].rsplit(":", 1)[1]) for p in pods if p["component"] == "redis-follower"}
    seen: dict[str, int] = {}
    ready = threading.Barrier(len(ports) + 1)
    stop = threading.Event()

    def observe(name: str, port: int) -> None:
        conn = redis.Redis(port=port)
        conn.config_set("notify-keyspace-events", "KA")
        sub = conn.pubsub()  # type: ignore[no-untyped-call]
        sub.subscribe("__keyspace@0__:guestbook")
        sub.get_message(timeout=1.0)
        ready.wait()
        while not stop.is_set():
            message = sub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                seen.setdefault(name, time.perf_counter_ns())
                return

    threads = [threading.Thread(target=observe, args=item, daemon=True) for item in ports.items()]
    for t in threads:
        t.start()
    ready.wait()
    result = lab.client.post("/api/probe", headers=HX).json()
    for t in threads:
        t.join(timeout=5)
    stop.set()
    assert result["all_arrived"] and result["acknowledged"] == 2, result
    for node in result["nodes"]:
        if node["role"] == "follower":
            independent = seen[node["name"]]
            # generous here (threads share one GIL with the app); bench/bench_probe.py checks the 5 ms target
            assert abs(node["seen_ns"] - independent) / 1e6 < 25, (node, independent)
            assert node["ms"] >= 0


def test_write_load_is_accounted_for_on_every_node(lab: Lab) -> None:
    rate, seconds = LOAD[lab.platform]
    planned = int(rate * seconds)
    response = lab.client.post("/api/load", json={"rate": rate, "seconds": seconds}, headers=HX)
    assert response.status_code == 202, response.text
    assert lab.client.post("/api/load", json={"rate": 10, "seconds": 1}, headers=HX).status_code == 409

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = lab.client.get("/api/load").json()
        return body if body["state"] not in ("running", "checking") else None

    done = wait_until(finished, 30, what="the write load to finish")
    assert done["state"] == "done", done
    assert done["ok"] == done["planned"] == planned and done["failed"] == 0, done
    assert [n["role"] for n in done["nodes"]] == ["leader", "follower", "follower"]
    assert all(n["found"] == planned and n["missing"] == 0 and n["error"] is None for n in done["nodes"]), done
    assert "every one is on the leader and on all 2 followers" in done["message"]
    assert "every one is on the leader and on all 2 followers" in lab.client.get("/fragments/experiments").text


def test_stopping_the_write_load_early_accounts_for_what_it_wrote(lab: Lab) -> None:
    """The panel's ■ Stop button (`hx-delete` on /api/load): the load stops long before its planned end, and every
    entry it wrote before stopping is still looked for on every node."""
    planned = 20 * 30
    assert lab.client.post("/api/load", json={"rate": 20, "seconds": 30}, headers=HX).status_code == 202
    wait_until(lambda: lab.client.get("/api/load").json()["ok"] >= 5, 10, what="a few writes of the load")
    stopped = lab.client.delete("/api/load", headers={**HX, "Accept": "text/html"})  # as htmx sends it
    assert stopped.status_code == 200 and 'id="load-form"' in stopped.text, stopped.text  # the panel, for htmx

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = lab.client.get("/api/load").json()
        return body if body["state"] not in ("running", "checking") else None

    done = wait_until(finished, 15, what="the stopped load to be accounted for")
    assert done["state"] == "stopped", done
    assert 5 <= done["ok"] < planned and done["elapsed_seconds"] < 20, done
    assert all(n["found"] == done["ok"] and n["missing"] == 0 for n in done["nodes"]), done
    assert lab.client.delete("/api/load", headers=HX).json()["state"] == "stopped"  # a second press: no change


def test_network_blip_is_a_partial_resync(lab: Lab) -> None:
    wait_until(lab.in_sync, what="in sync")
    body = lab.drill("network-blip")
    assert "PARTIAL" in body["message"] and "sync_partial_ok +1" in body["message"], body["message"]
    assert any(m["kind"] == "partial_resync" for m in lab.client.get("/api/lag").json()["marks"])


def test_pause_replication_makes_lag_grow_then_drain(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drills, "PAUSE_SECONDS", 1.5)
    wait_until(lab.in_sync, what="in sync")
    started = time.time()
    body = lab.drill("pause-replication")
    assert "gap grew to" in body["message"] and "link stayed up" in body["message"], body["message"]
    assert "holds every entry" in body["message"], body["message"]
    history = lab.client.get("/api/lag").json()
    gaps = [s["gap_bytes"] or 0 for samples in history["followers"].values() for s in samples if s["time"] >= started]
    assert max(gaps) > 0, history["followers"]  # the sampler measured the lag too (through port-forwards on k8s)
    behind = [s["seconds_behind"] for samples in history["followers"].values() for s in samples if s["time"] >= started]
    assert max(b for b in behind if b is not None) >= 0.5
    wait_until(lab.in_sync, what="caught up")
    assert all(f["gap_bytes"] == 0 and f["link"] == "up" for f in lab.replication()["followers"])


def test_delete_follower_comes_back_with_a_full_resync(lab: Lab) -> None:
    before = {f["name"] for f in lab.replication()["followers"]}
    body = lab.drill("delete-follower")
    assert "FULL sync" in body["message"] and "sync_full +1" in body["message"], body["message"]
    assert any(line.startswith("$ kubectl delete pod") for line in body["output"])
    wait_until(lab.in_sync, what="in sync with the replacement")
    after = {f["name"] for f in lab.replication()["followers"]}
    assert len(after) == 2 and len(after - before) == 1
    marks = lab.client.get("/api/lag").json()["marks"]
    assert any(m["kind"] == "full_resync" and m["node"] in after - before for m in marks)


def test_scale_followers_to_three_and_back(lab: Lab) -> None:
    body = lab.drill("scale-followers")
    assert "Scaled to 3" in body["message"] and "sync_full +1" in body["message"], body["message"]
    assert any("--replicas=3" in line for line in body["output"])
    if lab.platform == "kubernetes":
        assert lab.deployments()["redis-follower"].spec.replicas == 2
    wait_until(lab.in_sync, what="two followers in sync")


def test_scale_frontend_to_five_and_back_to_two(lab: Lab) -> None:
    body = lab.drill("scale-frontend")
    assert "5 frontend replicas answered, then 2" in body["message"], body["message"]
    # the three scaled away may still be Terminating for their grace period, as kubectl get pods shows them
    wait_until(
        lambda: len([p for p in lab.client.get("/api/pods").json() if p["component"] == "frontend"]) == 2,
        what="two frontend pods left",
    )
    if lab.platform == "kubernetes":
        assert lab.deployments()["frontend"].spec.replicas == 2


def test_logs_side_by_side_are_the_pods_real_logs(lab: Lab) -> None:
    columns = lab.client.get("/api/logs-side").json()
    assert [c["component"] for c in columns] == ["redis-leader", "redis-follower", "redis-follower"], columns
    redis_pods = {p["name"] for p in lab.client.get("/api/pods").json() if p["component"] != "frontend"}
    assert {c["pod"] for c in columns} == redis_pods
    for column in columns:  # what redis-server wrote, with its timestamps: no made-up lines
        assert column["lines"], column
        assert all(REDIS_LINE.match(line["text"]) for line in column["lines"]), column["lines"][:3]
        assert all(abs(line["time"] - time.time()) < 600 for line in column["lines"]), column["lines"][:3]
    kinds = {line["kind"] for column in columns for line in column["lines"]}
    assert {"ok", "link", "full", "partial"} <= kinds, kinds  # the blip's partial resync is in the leader's log
    follower_text = "\n".join(line["text"] for c in columns[1:] for line in c["lines"])
    assert "Connecting to MASTER" in follower_text and "MASTER <-> REPLICA sync: Finished with success" in follower_text
    if lab.platform == "kubernetes":  # line for line what the API server serves as the leader's log
        served = lab.v1.read_namespaced_pod_log(columns[0]["pod"], lab.namespace)
        assert all(line["text"] in served for line in columns[0]["lines"]), columns[0]["lines"][:3]
    assert lab.client.get("/logs/watch").status_code == 204
    html = lab.client.get("/fragments/logs").text
    assert "log-partial" in html and "log-ok" in html


def test_delete_leader_is_shown_as_data_loss(lab: Lab) -> None:
    wait_until(lab.in_sync, what="in sync")
    leader = lab.replication()["leader"]["name"]
    count = len(lab.replication()["entries"][leader])
    assert count > 0
    started = time.time()
    body = lab.drill("delete-leader")
    assert f"DATA LOSS: {count} entries are gone" in body["message"], body["message"]
    assert "2 followers made 2 full resync(s)" in body["message"] and "now hold 0 entries" in body["message"]
    wait_until(lab.in_sync, what="the followers in sync with the new leader")
    after = lab.replication()
    assert after["leader"]["name"] != leader
    assert all(entries == [] for entries in after["entries"].values())
    assert all(f["link"] == "up" for f in after["followers"])
    followers = {f["name"] for f in after["followers"]}

    def resyncs_sampled() -> set[str]:
        events = lab.client.get("/api/lag").json()["events"]
        seen = {e["node"] for e in events if e["time"] >= started and e["kind"] == "full_resync"}
        return seen if seen >= followers else set()

    wait_until(resyncs_sampled, what="the sampler's full_resync events for both followers")
    marks = lab.client.get("/api/lag").json()["marks"]
    assert any(m["detail"].startswith(f"deleted the leader {leader}") for m in marks)
    assert {m["node"] for m in marks if m["kind"] == "full_resync" and m["time"] >= started} == followers
    html = lab.client.get("/fragments/drills").text
    assert "message loss" in html and "hx-confirm" in html  # the warning before the click


def test_lag_history_shows_samples_events_and_marks(lab: Lab) -> None:
    history = lab.client.get("/api/lag").json()
    assert history["interval"] == lab.settings.sample_interval
    current = {f["name"] for f in lab.replication()["followers"]}
    assert current <= set(history["followers"]) and len(history["followers"]) >= 4  # replaced and scaled ones too
    for name in current:
        samples = history["followers"][name]
        assert samples and samples[-1]["link"] == "up" and samples[-1]["gap_bytes"] == 0, samples[-3:]
    kinds = {e["kind"] for e in history["events"]}
    assert "full_resync" in kinds, history["events"]
    marks = {m["kind"] for m in history["marks"]}
    assert {"drill", "link_down", "partial_resync", "full_resync"} <= marks, marks
    html = lab.client.get("/fragments/lag").text
    assert html.count('class="lag-svg"') >= 2 and "gap (bytes" in html and "seconds behind" in html
