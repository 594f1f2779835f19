"""Every setting of the dashboard, in one place: each is a CLI flag and an environment variable `GUESTBOOK_LAB_<NAME>`.

`Settings` is built once by the CLI (or by a test) and handed down; nothing reads the environment elsewhere.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "GUESTBOOK_LAB_"
DATA_NAME = "guestbook-lab"  # the wheel installs templates/, static/ and manifests/ under <prefix>/share/<this>


def resource_root() -> Path:
    """Where templates/, static/ and manifests/ are: the source checkout (an editable install, a clone), else the
    `share/guestbook-lab` data directory that the wheel installs into the environment's prefix."""
    package = Path(__file__).resolve().parent
    checkout = package.parent
    if (checkout / "templates" / "index.html").is_file():
        return checkout
    installed = package.parents[3] / "share" / DATA_NAME  # <prefix>/lib/pythonX.Y/site-packages/dashboard
    return installed if installed.is_dir() else Path(sys.prefix) / "share" / DATA_NAME


PROJECT_ROOT = resource_root()
MANIFESTS_DIR = PROJECT_ROOT / "manifests"


def default_data_dir() -> Path:
    """Where workshop mode keeps its progress database: the user's state dir (XDG), never a temporary one."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "guestbook-lab"


def default_run_dir() -> Path:
    """Where the local platform keeps its pid table and endpoints file while a lab runs."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"guestbook-lab-{os.getuid()}"


class Settings(BaseSettings):
    """The dashboard's settings. Field descriptions are the `--help` text."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = Field(
        "127.0.0.1", description="Address the dashboard listens on. Anything but loopback requires a token."
    )
    port: int = Field(8000, ge=0, le=65535, description="Port the dashboard listens on.")
    platform: Literal["local", "kubernetes"] = Field(
        "local", description="Where the lab runs: 'local' (redis-server processes on this machine) or 'kubernetes'."
    )
    token: str | None = Field(
        None,
        description="Access token for the dashboard (Authorization: Bearer, or ?token= once in the browser). "
        "Generated and printed at start when the host is not loopback and none is given. As a flag it shows in ps: "
        "prefer the environment variable or --token-file.",
    )
    token_file: Path | None = Field(
        None,
        description="File holding the access token, read once at start: keeps the token out of ps, unlike --token "
        "(GUESTBOOK_LAB_TOKEN does too).",
    )
    allowed_host: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Another name this loopback dashboard answers to besides localhost and loopback addresses "
        "(an /etc/hosts alias, a local proxy's name); repeat the flag or separate names with commas.",
    )
    redis_server: str = Field(
        "redis-server", description="The redis-server binary for the local platform (a name on PATH or a path)."
    )
    frontend_port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="Local port of the expose step (like kubectl port-forward svc/frontend 8080:80); 0 picks one.",
    )
    run_dir: Path = Field(
        default_factory=default_run_dir, description="Directory for the local platform's pid table and endpoints file."
    )
    sample_interval: float = Field(
        0.5, gt=0.05, le=10, description="Seconds between two samplings of Redis and of the pods."
    )
    step_timeout: float = Field(
        0,
        ge=0,
        description="Seconds a step's check may take before it fails; 0 = the platform's default (local 20, k8s 300).",
    )
    max_entry_length: int = Field(
        500, ge=1, le=100_000, description="Longest guestbook entry, in characters, the Python frontend accepts."
    )
    leader_image: str | None = Field(
        None, description="Image for redis-leader instead of the manifest's (a mirror, an arm64 build)."
    )
    follower_image: str | None = Field(None, description="Image for redis-follower instead of the manifest's.")
    frontend_image: str | None = Field(None, description="Image for frontend instead of the manifest's.")
    kubeconfig: Path | None = Field(
        None, description="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config; in a pod: its service account)."
    )
    context: str | None = Field(None, description="kubeconfig context to use (default: the current context).")
    namespace: str = Field("default", description="Kubernetes namespace of the lab (the tutorial uses 'default').")
    create_namespace: bool = Field(
        False, description="Create the namespace if it does not exist (never done unless asked)."
    )
    redis_access: Literal["auto", "direct", "port-forward"] = Field(
        "auto",
        description="How the dashboard reaches Redis pods on Kubernetes: pod IPs ('direct'), port-forward, or 'auto'.",
    )
    expose_mode: Literal["port-forward", "nodeport", "loadbalancer"] = Field(
        "port-forward", description="How the expose step publishes the frontend on Kubernetes."
    )
    field_manager: str = Field("guestbook-lab", description="Server-side apply field manager on Kubernetes.")
    workshop: bool = Field(
        False,
        description="Workshop mode: the instructor (who holds the token) opens a room; learners join with a code "
        "and each gets a lab of their own.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Directory of the workshop's progress database (SQLite); rooms come back after a restart.",
    )
    max_learners: int = Field(30, ge=1, le=1000, description="Most learners one workshop room takes.")
    workshop_profile: bool = Field(
        False,
        description="Run the frontend at 1 replica instead of the manifest's 3 (4 pods per learner instead of 6).",
    )

    @field_validator("allowed_host", mode="before")
    @classmethod
    def split_names(cls, value: Any) -> Any:
        """'a,b' (the environment), ['a', 'b,c'] (repeated flags) -> ('a', 'b', 'c'); names without ports."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return value
        names = [n for item in items for n in (part.strip().lower() for part in str(item).split(",")) if n]
        for name in names:
            if any(c in name for c in ":/@[] "):
                raise ValueError(f"{name!r} is not a host name (give names like lab.example, without port or scheme)")
        return tuple(names)

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def image_override(self, component: str) -> str | None:
        return {
            "redis-leader": self.leader_image,
            "redis-follower": self.follower_image,
            "frontend": self.frontend_image,
        }.get(component)


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
