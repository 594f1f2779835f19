"""The command line: `guestbook-lab` / `python -m dashboard`. Every flag is also an environment variable.

Flags use kubectl's names where kubectl has one (`--kubeconfig`, `--context`, `-n/--namespace`). The CLI builds
`Settings`, refuses bad combinations with one sentence and its fix, prints where to open the dashboard
(with a generated token when it serves other machines, like Jupyter) and runs uvicorn until Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from dashboard import __version__
from dashboard.security import generate_token
from dashboard.settings import ENV_PREFIX, Settings

FLAG_NAMES = {"expose_mode": "--expose"}  # the settings whose flag is not their field's name


def flag_kwargs(name: str) -> dict[str, Any]:
    """The argparse kwargs a setting's type asks for: a number parsed, a Literal's choices, a switch, a list."""
    annotation = Settings.model_fields[name].annotation
    if annotation in (int, float):
        return {"type": annotation}
    if annotation is bool:
        return {"action": "store_true", "default": None}
    if get_origin(annotation) is Literal:
        return {"choices": list(get_args(annotation))}
    return {"action": "append"} if annotation == tuple[str, ...] else {}


# flag -> (settings field, extra argparse kwargs), in the settings' order
FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    FLAG_NAMES.get(name, "--" + name.replace("_", "-")): (name, flag_kwargs(name)) for name in Settings.model_fields
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guestbook-lab",
        description=(
            "Run the Kubernetes guestbook lab (Redis leader, two followers, a web frontend) step by step from a "
            "browser, and watch replication live. Every flag can also be set by the environment variable shown."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fields = Settings.model_fields
    for flag, (name, extra) in FLAGS.items():
        field = fields[name]
        env = ENV_PREFIX + name.upper()
        default = field.default if field.default_factory is None else "(see description)"
        default = "none" if default == () else default
        help_text = f"{field.description} [env {env}; default {default}]"
        names = [flag, "-n"] if flag == "--namespace" else [flag]
        parser.add_argument(*names, **{"dest": name, "help": help_text, "default": None, **extra})
    parser.add_argument("--version", action="version", version=f"guestbook-lab {__version__}")
    return parser


def settings_from_args(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the environment, overridden by the flags given. Exits with one sentence on a bad value."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "a setting"
        flag = next((f for f, (n, _) in FLAGS.items() if n == name), name)
        parser.exit(
            2, f"guestbook-lab: {flag} (env {ENV_PREFIX}{name.upper()}): {first['msg']}. Run guestbook-lab --help.\n"
        )


def token_warning(argv: Sequence[str] | None) -> str | None:
    """The warning for a token given as a flag: every user of the machine sees it in `ps`."""
    args, _ = build_parser().parse_known_args(argv)
    if args.token is None:
        return None
    return (
        "guestbook-lab: warning: --token on the command line is visible to every user of this machine in ps; "
        f"set {ENV_PREFIX}TOKEN or use --token-file FILE instead."
    )


def read_token_file(settings: Settings) -> Settings | str:
    """Settings with the token read from --token-file, or the one-sentence error to print."""
    path = settings.token_file
    if path is None:
        return settings
    flag = f"--token-file (env {ENV_PREFIX}TOKEN_FILE)"
    if settings.token:
        return f"guestbook-lab: give the token once: either --token / {ENV_PREFIX}TOKEN or {flag}, not both."
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return f"guestbook-lab: {flag}: cannot read {path} ({exc.__class__.__name__}); give a readable file."
    if not token or any(c.isspace() for c in token):
        return f"guestbook-lab: {flag}: {path} must hold the token on one line, without spaces."
    return settings.model_copy(update={"token": token})


def port_is_free(host: str, port: int) -> bool:
    """Whether `host:port` can be bound now (uvicorn would otherwise fail with a traceback-like log)."""
    if port == 0:
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from_args(argv)
    warning = token_warning(argv)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    read = read_token_file(settings)
    if isinstance(read, str):
        print(read, file=sys.stderr)
        return 2
    settings = read
    # The token now lives in `settings` only: no child process (redis-server, the frontends) inherits it.
    os.environ.pop(f"{ENV_PREFIX}TOKEN", None)
    if not settings.is_loopback and not settings.token:
        settings = settings.model_copy(update={"token": generate_token()})
    if (
        settings.platform == "local"
        and shutil.which(settings.redis_server) is None
        and not os.path.isfile(settings.redis_server)
    ):
        print(
            f"guestbook-lab: redis-server was not found ({settings.redis_server!r}). Install Redis "
            f"(apt-get install redis-server) or set --redis-server / {ENV_PREFIX}REDIS_SERVER to its path.",
            file=sys.stderr,
        )
        return 2

    run_dir_lock = None
    if settings.platform == "local":
        # Before anything listens: a second dashboard on this run dir would drive the first one's processes.
        from dashboard.platforms.local import rundir

        try:
            run_dir_lock = rundir.lock(settings.run_dir, settings.port)
        except rundir.RunDirError as exc:
            print(f"guestbook-lab: {exc.sentence}", file=sys.stderr)
            return 2
    try:
        return serve(settings)
    finally:
        if run_dir_lock is not None:
            run_dir_lock.release()


def serve(settings: Settings) -> int:
    """Print where to open the dashboard and run uvicorn until Ctrl-C/SIGTERM; the exit code."""
    import uvicorn

    from dashboard.web import create_app

    shown_host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    url = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else shown_host}:{settings.port}/"
    if settings.token:
        url += f"?token={settings.token}"
    print(f"Guestbook lab dashboard ({settings.platform} platform) — open {url}", flush=True)
    app = create_app(settings)
    if not port_is_free(settings.host, settings.port):
        print(
            f"guestbook-lab: port {settings.port} on {settings.host} is already in use. "
            f"Stop what uses it, or pick another with --port / {ENV_PREFIX}PORT.",
            file=sys.stderr,
        )
        return 2
    # Live views hold Server-Sent Events streams open forever: bound the graceful shutdown so Ctrl-C/SIGTERM
    # always reaches the lifespan's cleanup (which stops every process of the lab).
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
    )
    from dashboard.web.limits import DropCancelNotice

    logging.getLogger("uvicorn.error").addFilter(DropCancelNotice())  # after Config: it sets up uvicorn's logging
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGTERM once its shutdown (and the lab's cleanup) is done: make that a clean exit, 0,
    # as Ctrl-C is, instead of death by signal.
    signal.signal(signal.SIGTERM, exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started or not server.should_exit else 1


if __name__ == "__main__":
    raise SystemExit(main())
