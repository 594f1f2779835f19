"""The wheel carries what the app reads at run time, and the installed app finds it without a checkout.

Builds the wheel (no dependencies, no download), installs it into a prefix of its own, and runs the installed
dashboard from a directory that is not the checkout: the page, the vendored static files and the lab's manifests
must all answer, so nothing depends on the source tree (or on /app) being on sys.path.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import sys
from fastapi.testclient import TestClient
import dashboard
from dashboard.settings import PROJECT_ROOT, Settings
from dashboard.web import create_app
assert dashboard.__file__.startswith(sys.argv[1]), dashboard.__file__
assert str(PROJECT_ROOT).startswith(sys.argv[1]), PROJECT_ROOT
with TestClient(create_app(Settings(run_dir=sys.argv[2])), base_url="http://127.0.0.1:8000") as client:
    paths = ("/", "/static/app.css", "/static/vendor/htmx-2.0.11.min.js", "/manifests/kustomization.yaml", "/docs")
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
print("ok")
"""


PIP_INSTALL = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]


def ours_installed() -> list[str]:
    """guestbook-lab as installed in this environment (the editable install of `./dev`), or nothing."""
    return [d.metadata["Name"] for d in importlib.metadata.distributions() if d.metadata["Name"] == "guestbook-lab"]


def tracked(folder: str) -> set[str]:
    out = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {line for line in out.splitlines() if line}


def test_the_wheel_ships_templates_static_and_manifests_and_the_installed_app_uses_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUESTBOOK_LAB_", "PIP_"))}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("guestbook_lab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    data = {n.split("/share/guestbook-lab/", 1)[1] for n in names if "/share/guestbook-lab/" in n}
    wanted = tracked("templates") | tracked("static") | tracked("manifests")
    assert wanted and wanted <= data, f"missing from the wheel: {sorted(wanted - data)}"

    prefix = tmp_path / "prefix"
    installed = ours_installed()
    subprocess.run(
        [*PIP_INSTALL, "--ignore-installed", "--prefix", str(prefix), str(wheel)],
        check=True,
        env=env,
        capture_output=True,
    )
    site = next(prefix.glob("lib/python*/site-packages"))
    # `--ignore-installed`: without it pip uninstalls the venv's own (editable) guestbook-lab to "replace" it
    assert ours_installed() == installed, "installing the wheel into a prefix removed the environment's guestbook-lab"
    run = subprocess.run(
        [sys.executable, "-c", CHECK, str(prefix), str(tmp_path / "run")],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
