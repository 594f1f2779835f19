"""Where the client talks to: kubeconfig and context as kubectl picks them, or the pod's service account."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as _kube_config
from kubernetes.config.config_exception import ConfigException

from dashboard.errors import PlatformUnavailable
from dashboard.platforms.kubernetes.errors import bad_kubeconfig, kubeconfig_missing, unknown_context

if TYPE_CHECKING:
    from dashboard.settings import Settings

k8s_config: Any = _kube_config  # kubernetes.config is untyped: keep its Any here
# What the client raises for a kubeconfig it cannot use: a malformed one (a list, a number where a mapping belongs)
# surfaces as the TypeError or AttributeError of the code that walks it.
KUBECONFIG_ERRORS = (ConfigException, OSError, yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError)


@dataclass(frozen=True)
class ClusterConfig:
    """Where the client talks to: kubeconfig context or the pod's service account."""

    configuration: Any  # kubernetes.client.Configuration
    context: str | None
    server: str
    in_cluster: bool
    source: str  # kubeconfig path(s) or "in-cluster service account"


def load_cluster_config(settings: Settings) -> ClusterConfig:
    """Like kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config; the pod's service account when
    running in a pod (KUBERNETES_SERVICE_HOST) and no kubeconfig is given. --context picks the context."""
    configuration = k8s_client.Configuration()
    if settings.kubeconfig:
        paths = [str(settings.kubeconfig.expanduser())]
    elif os.environ.get("KUBECONFIG"):
        paths = [p for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
    else:
        paths = [] if os.environ.get("KUBERNETES_SERVICE_HOST") else [str(Path("~/.kube/config").expanduser())]
    existing = [p for p in paths if Path(p).expanduser().is_file()]
    if not existing:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not settings.kubeconfig:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except ConfigException as exc:
                raise PlatformUnavailable(
                    f"The pod's service account cannot be used ({exc}).",
                    "Mount a service account token (automountServiceAccountToken: true) or pass --kubeconfig.",
                ) from exc
            return ClusterConfig(configuration, None, str(configuration.host), True, "in-cluster service account")
        raise kubeconfig_missing(paths or ["~/.kube/config"])
    config_file = os.pathsep.join(existing)
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=config_file)
    except KUBECONFIG_ERRORS as exc:
        raise bad_kubeconfig(config_file, str(exc)) from exc
    names = [str(c.get("name")) for c in contexts or []]
    if settings.context and settings.context not in names:
        raise unknown_context(settings.context, names)
    context = settings.context or (str(active.get("name")) if active else None)
    if not context:
        raise PlatformUnavailable(
            f"The kubeconfig {config_file} has no current context.",
            "Pick one with --context (kubectl config get-contexts lists them).",
        )
    try:
        k8s_config.load_kube_config(
            config_file=config_file, context=context, client_configuration=configuration, persist_config=False
        )
    except KUBECONFIG_ERRORS as exc:
        raise bad_kubeconfig(config_file, str(exc)) from exc
    return ClusterConfig(configuration, context, str(configuration.host), False, config_file)
