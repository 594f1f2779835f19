"""The room part of the pre-flight on the `/preflight` page, on Kubernetes: the dashboard in workshop mode against
the API double (`RoomDouble`, whose node says what it can hold) says whether --max-learners labs fit the cluster,
in the same sentence as `/api/preflight` and the instructor's room page. The local platform's is in
tests/test_workshop.py."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from dashboard.web import create_app
from tests.k8s_double import RoomDouble
from tests.k8s_helpers import settings_for

TOKEN = "instructor-token-for-tests"
INSTRUCTOR = {"Authorization": f"Bearer {TOKEN}"}


def test_the_preflight_page_says_whether_the_room_fits_the_cluster(tmp_path: Path) -> None:
    with RoomDouble() as double:
        settings = settings_for(
            double,
            tmp_path,
            workshop=True,
            workshop_profile=True,
            token=TOKEN,
            data_dir=tmp_path / "data",
            max_learners=100,
        )
        with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
            room = client.get("/api/preflight", headers=INSTRUCTOR).json()["room"]
            assert room["fits"] is True and room["most_learners"] == 160  # 64 CPUs / 400m a learner
            assert room["message"].startswith("100 learners fit: they request 40000m CPU")
            page = client.get("/preflight", headers=INSTRUCTOR).text
            assert f'<p class="message" id="room-fit">{room["message"]}</p>' in page
            allocatable = "1 node(s), 1000 pods, 64000m cpu, 262144Mi memory"
            assert f'<dt>Allocatable</dt><dd class="mono">{allocatable}</dd>' in page
            assert '<dt>At most</dt><dd class="mono">160 learners</dd>' in page
            assert "Pre-flight for the room: " + room["message"] in client.get("/rooms", headers=INSTRUCTOR).text

            double.allocatable = {"cpu": "8", "memory": "16Gi", "pods": "110"}
            small = client.get("/api/preflight", headers=INSTRUCTOR).json()["room"]
            assert small["fits"] is False and small["most_learners"] == 20
            page = client.get("/preflight", headers=INSTRUCTOR).text
            assert f'<p class="refused" id="room-fit">{small["message"]} {small["hint"]}</p>' in page
            assert "✗ not ready" in page
