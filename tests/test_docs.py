"""Docs kept honest: every setting is in the README and in --help; the README's commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard.cli import FLAGS, build_parser, settings_from_args
from dashboard.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_has_a_flag() -> None:
    assert {name for name, _ in FLAGS.values()} == set(Settings.model_fields)


@pytest.mark.parametrize(("flag", "name"), [(f, n) for f, (n, _) in FLAGS.items()])
def test_every_setting_is_in_the_readme_and_help(flag: str, name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    env = ENV_PREFIX + name.upper()
    assert f"`{flag}`" in readme and f"`{env}`" in readme
    help_text = build_parser().format_help()
    assert flag in help_text and env in help_text


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
    assert "./dev test" in (ROOT / "README.md").read_text()


def test_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUESTBOOK_LAB_PORT", "9001")
    monkeypatch.setenv("GUESTBOOK_LAB_NAMESPACE", "lab")
    settings = settings_from_args(["--port", "9002"])
    assert settings.port == 9002 and settings.namespace == "lab"
    assert settings_from_args(["-n", "other"]).namespace == "other"


def test_bad_value_exits_with_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        settings_from_args(["--port", "99999"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and "GUESTBOOK_LAB_PORT" in err and "Traceback" not in err


def test_the_readme_api_table_names_only_routes_the_app_has() -> None:
    from dashboard.web import create_app

    spec = create_app(Settings()).openapi()
    routes = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path)) for path, ops in spec["paths"].items() for method in ops
    }
    routes |= {("GET", "/manifests/{}")}  # plain text, in the schema too, but keep the table's own spelling
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| request | answer |") : readme.index("A script that changes the lab")]
    named = set()
    for row in table.splitlines()[2:]:
        first = row.split(" | ")[0]
        method = ""
        for method_path in re.findall(r"`(?:(GET|POST|DELETE) )?(/[^` ]*)?`", first):
            method = method_path[0] or method
            if method_path[1]:
                named.add((method, re.sub(r"\{[^}]+\}", "{}", method_path[1])))
        if "`GET`" in first and "`DELETE`" in first:  # `POST /api/load` {...}, `GET`, `DELETE`
            path = next(p for m, p in named if p == "/api/load")
            named |= {("GET", path), ("DELETE", path)}
    assert len(named) >= 15
    assert named <= routes, f"in the README but not in the app: {sorted(named - routes)}"
