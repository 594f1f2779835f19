"""Admission refusals: why a Deployment's ReplicaSet cannot create pods, in one sentence with the fix (pure).

When the API server's admission refuses a ReplicaSet's pods (ResourceQuota "exceeded quota", PodSecurity
"violates PodSecurity", a LimitRange maximum), the ReplicaSet controller records a FailedCreate event and the
condition `ReplicaFailure` (reason FailedCreate), which the Deployment controller copies onto the Deployment.
`refusal(deployment)` reads that condition, so a step's check can fail at once with the reason instead of
waiting for its timeout while the pods board stays at 0/1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

QUOTA = "quota"
POD_SECURITY = "pod-security"
LIMIT_RANGE = "limit-range"
OTHER = "other"


@dataclass(frozen=True)
class Refusal:
    """A refusal of a Deployment's pods: `kind` (quota, pod-security, limit-range, other), the sentence and the fix."""

    kind: str
    message: str
    hint: str


def refusal(deployment: Mapping[str, Any]) -> Refusal | None:
    """The admission refusal that keeps this Deployment's pods from being created, or None."""
    conditions = (deployment.get("status") or {}).get("conditions") or []
    failure = [c for c in conditions if c.get("type") == "ReplicaFailure" and c.get("status") == "True"]
    condition = failure[0] if failure else {}
    if condition.get("reason") != "FailedCreate":
        return None
    name = str((deployment.get("metadata") or {}).get("name") or "")
    namespace = str((deployment.get("metadata") or {}).get("namespace") or "")
    text = str(condition.get("message") or "")
    said = " ".join(text.split(" is forbidden: ", 1)[-1].split())
    said = said if len(said) <= 240 else said[:239] + "…"
    refused = f"Kubernetes refused to create the pods of deployment {name}"
    if "exceeded quota" in text:
        return Refusal(
            QUOTA,
            f"{refused}: the namespace's ResourceQuota is used up ({said}).",
            f"Free what uses it (kubectl describe resourcequota -n {namespace}) or ask the instructor to raise "
            "the quota, then run the step again.",
        )
    if "violates PodSecurity" in text:
        level = re.search(r'violates PodSecurity "([a-z]+)', text)
        shown = level.group(1) if level else "its"
        return Refusal(
            POD_SECURITY,
            f"{refused}: they violate the namespace's Pod Security level {shown!r} ({said}).",
            f"The tutorial's images need the baseline level: ask the instructor to label namespace {namespace} "
            "pod-security.kubernetes.io/enforce=baseline, then run the step again.",
        )
    if "LimitRange" in text or ("maximum" in text and "per Container" in text):
        return Refusal(
            LIMIT_RANGE,
            f"{refused}: the namespace's LimitRange forbids them ({said}).",
            f"Ask the instructor to check kubectl describe limitrange -n {namespace}, then run the step again.",
        )
    return Refusal(
        OTHER,
        f"{refused} ({said}).",
        f"Look at kubectl get events -n {namespace} --field-selector reason=FailedCreate, fix that, "
        "then run the step again.",
    )
