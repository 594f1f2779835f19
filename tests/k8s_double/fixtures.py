"""The recorded API responses the double is seeded from, and the API's small shapes (Status, merge-patch, times)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "k8s"
TOKEN = "double-token"
JSON = dict[str, Any]

# plural -> (group, kind, API prefix)
RESOURCES = {
    "pods": ("", "Pod", "/api/v1"),
    "services": ("", "Service", "/api/v1"),
    "events": ("", "Event", "/api/v1"),
    "deployments": ("apps", "Deployment", "/apis/apps/v1"),
}


def fixture(rel: str) -> Any:
    return json.loads((FIXTURES / rel).read_text())


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def no_namespace(name: str) -> ApiError:
    details = {"name": name, "kind": "namespaces"}
    return ApiError(404, status_body(404, "NotFound", f'namespaces "{name}" not found', details))


class ApiError(Exception):
    def __init__(self, code: int, body: JSON) -> None:
        super().__init__(body.get("message"))
        self.code = code
        self.body = body
