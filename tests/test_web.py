"""The web layer over a fake platform: JSON API shapes, status codes, error rendering, cross-site refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dashboard.settings import Settings
from dashboard.web import create_app
from tests.fakes import FakePlatform

HX = {"HX-Request": "true"}


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def client(platform: FakePlatform, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(run_dir=tmp_path / "run", sample_interval=0.1, step_timeout=0.3)
    with TestClient(create_app(settings, platform), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_lifespan_starts_and_closes_the_platform(platform: FakePlatform, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(run_dir=tmp_path), platform), base_url="http://127.0.0.1:8000"):
        assert platform.started
    assert platform.closed


def test_api_lab_contract(client: TestClient) -> None:
    body = client.get("/api/lab").json()
    assert body["platform"] == "local"
    assert body["frontend_url"] is None
    assert [s["id"] for s in body["steps"]] == ["leader", "followers", "frontend", "expose", "cleanup"]
    for step in body["steps"]:
        assert {"id", "title", "state", "message"} <= step.keys()
        assert step["state"] == "pending"


def test_unknown_step_is_404_json(client: TestClient) -> None:
    r = client.post("/api/steps/redis-master", headers=HX)
    assert r.status_code == 404
    body = r.json()
    assert "redis-master" in body["error"] and "leader" in body["hint"]


def test_followers_before_leader_is_409_with_hint(client: TestClient, platform: FakePlatform) -> None:
    r = client.post("/api/steps/followers", headers=HX | {"Accept": "application/json"})
    assert r.status_code == 409
    body = r.json()
    assert "Start the Redis leader" in body["error"]
    assert body["hint"] == "Run the leader step first (it has not run yet), then try again."
    assert platform.applied == []  # nothing was done


def test_409_for_htmx_is_a_fragment_retargeted_to_the_step_card(client: TestClient) -> None:
    page = {"Accept": "text/html", "HX-Trigger": "run-followers", "Origin": "http://127.0.0.1:8000"}
    r = client.post("/api/steps/followers", headers=HX | page)
    assert r.status_code == 409
    assert "text/html" in r.headers["content-type"]
    assert r.headers["HX-Retarget"] == "#run-followers-error" and r.headers["HX-Reswap"] == "innerHTML"
    assert "needs" in r.text and 'class="refused"' in r.text
    assert "Traceback" not in r.text
    assert 'id="run-followers-error"' in client.get("/").text  # the slot the refusal lands in


def test_htmx_success_answers_the_topic_fragment_and_scripts_get_json(client: TestClient) -> None:
    html = client.post("/api/steps/leader", headers=HX | {"Accept": "text/html"})
    assert html.status_code == 200 and html.text.lstrip().startswith('<ol class="steps">')
    assert client.post("/api/steps/leader", headers=HX).json()["id"] == "leader"


def test_cross_site_post_is_refused(client: TestClient, platform: FakePlatform) -> None:
    r = client.post("/api/steps/leader", headers=HX | {"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert "another site" in r.json()["error"]
    assert platform.applied == []


def test_form_post_without_hx_header_is_refused(client: TestClient, platform: FakePlatform) -> None:
    r = client.post("/api/steps/leader", data={"x": "1"})
    assert r.status_code == 403
    assert platform.applied == []


def test_failed_check_is_reported_as_failed_step_not_500(client: TestClient, platform: FakePlatform) -> None:
    r = client.post("/api/steps/leader", headers=HX | {"Accept": "application/json"})
    # the fake platform never runs a leader, so the check times out (0.3 s) and the step says why
    assert r.status_code == 200
    step = r.json()
    assert step["state"] == "failed"
    assert 'deployment "redis-leader" has no ready pod' in step["message"]
    assert platform.applied == ["redis-leader-deployment.yaml", "redis-leader-service.yaml"]
    assert client.get("/api/lab").json()["steps"][0]["state"] == "failed"


def test_page_renders_every_panel(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    for needle in ('id="steps"', 'id="pods"', 'id="replication"', 'id="guestbook"', 'id="activity"', "sse-connect"):
        assert needle in r.text
    assert "kubectl apply -f redis-leader-deployment.yaml" in r.text
    assert "http://" not in r.text.replace("http://127.0.0.1", "")  # no external asset


def test_unknown_page_is_a_friendly_404(client: TestClient) -> None:
    r = client.get("/nope", headers={"Accept": "text/html"})
    assert r.status_code == 404
    assert "nothing at this address" in r.text and "Traceback" not in r.text


def test_api_pods_and_replication_shapes(client: TestClient) -> None:
    assert client.get("/api/pods").json() == []
    rep = client.get("/api/replication").json()
    assert rep["leader"] is None and rep["followers"] == [] and rep["entries"] == {} and rep["in_sync"] is False


def test_openapi_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/lab", "/api/steps/{step_id}", "/api/pods", "/api/replication"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_token_mode(platform: FakePlatform, tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, host="192.0.2.1", token="s3cret")  # not loopback: a token is required
    with TestClient(create_app(settings, platform), base_url="http://192.0.2.1:8000") as c:
        assert c.get("/api/lab").status_code == 401
        assert c.get("/api/lab", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/?token=s3cret", follow_redirects=False)
        assert r.status_code == 303 and "token" not in r.headers["location"]
        assert c.get("/api/lab").status_code == 200  # the cookie now carries it


def test_platform_that_cannot_start_shows_its_error_on_the_page(tmp_path: Path) -> None:
    from dashboard.errors import PlatformUnavailable

    class Broken(FakePlatform):
        async def start(self) -> None:
            raise PlatformUnavailable("No kubeconfig was found (/nope).", "Pass --kubeconfig.")

    with TestClient(create_app(Settings(run_dir=tmp_path), Broken()), base_url="http://127.0.0.1:8000") as c:
        r = c.get("/")
        assert r.status_code == 200
        assert "No kubeconfig was found (/nope)." in r.text and "Pass --kubeconfig." in r.text


def test_api_docs_load_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/static/vendor/swagger-ui-" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/redoc").status_code == 404


def test_guestbook_proxy_before_expose_says_what_to_do(client: TestClient) -> None:
    r = client.get("/guestbook/guestbook.php?cmd=get")
    assert r.status_code == 409
    assert r.json() == {"error": "The guestbook is not exposed yet.", "hint": "Run the expose step (4) first."}


def test_guestbook_proxy_to_a_dead_frontend_is_one_sentence(client: TestClient, platform: FakePlatform) -> None:
    platform.url = "http://127.0.0.1:1/"  # nothing listens on port 1
    r = client.get("/guestbook/guestbook.php?cmd=get")
    assert r.status_code == 502
    assert "does not answer" in r.json()["error"] and "Traceback" not in r.text


def test_guestbook_proxy_refuses_cross_site_and_originless_writes(client: TestClient, platform: FakePlatform) -> None:
    platform.url = "http://127.0.0.1:1/"
    data = {"cmd": "append", "value": "x"}
    assert client.post("/guestbook/guestbook.php", data=data).status_code == 403
    evil = client.post("/guestbook/guestbook.php", data=data, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "another site" in evil.json()["error"]


def test_wrong_method_says_which_method_to_use(client: TestClient) -> None:
    r = client.get("/api/steps/leader")
    assert r.status_code == 405
    assert r.json() == {
        "error": "/api/steps/leader does not take GET.",
        "hint": "See /docs for what each address takes: steps, drills and the probe run with POST.",
    }


def test_load_with_form_or_bad_values_is_a_clear_400(client: TestClient) -> None:
    for kwargs in ({"data": {"rate": "abc", "seconds": "5"}}, {"json": {"rate": -1}}, {"data": {"rate": "9999"}}):
        r = client.post("/api/load", headers=HX, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 400, r.text
        assert r.json()["error"].endswith(".") and "rate" in r.json()["hint"]


def test_a_bad_query_value_is_one_sentence_not_fastapis_detail_list(client: TestClient) -> None:
    r = client.get("/api/logs/some-pod?tail=lots")
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error", "hint"}
    assert body["error"].startswith("tail is not valid:") and body["error"].endswith(".")


def test_manifests_are_served_exactly_and_nothing_else(client: TestClient) -> None:
    from dashboard.settings import MANIFESTS_DIR

    r = client.get("/manifests/redis-leader-deployment.yaml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/yaml")
    assert r.text == (MANIFESTS_DIR / "redis-leader-deployment.yaml").read_text()
    assert client.get("/manifests/kustomization.yaml").status_code == 200
    for bad in ("../pyproject.toml", "..%2Fpyproject.toml", "dashboard/role.yaml", "nope.yaml"):
        r = client.get(f"/manifests/{bad}")
        assert r.status_code == 404, bad
    assert 'href="/manifests/redis-leader-service.yaml"' in client.get("/").text
