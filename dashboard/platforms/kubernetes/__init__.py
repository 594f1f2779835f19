"""The Kubernetes platform: the lab on a real cluster. The only package of the dashboard that imports `kubernetes`.

By concern: `config` (kubeconfig, context, in-cluster), `api` (raw requests) and `errors` (their translation into
`DashboardError`s), `reflector` (the pod and event watches), `portforward`, `access` (pod IPs or port-forwards for
--redis-access, whether a NodePort answers), `objects` (pure functions over the API's JSON), `preflight` (access
reviews) and `platform` (`KubernetesPlatform`, which ties them together).
"""

from __future__ import annotations

from dashboard.platforms.kubernetes.platform import LAB_MANIFESTS, KubernetesPlatform

__all__ = ["LAB_MANIFESTS", "KubernetesPlatform"]
