"""The dashboard's own errors: one fact and one next step each, translated once at the platform boundary.

Every error a user can meet is a `DashboardError` with a one-sentence `message` (what happened) and a
one-sentence `hint` (what to do). The web layer renders them as JSON, an htmx fragment or a page;
nothing else in the package formats an exception for a user.
"""

from __future__ import annotations


class DashboardError(Exception):
    """An error a user can act on. `status` is the HTTP status the web layer answers with."""

    status: int = 500
    retry_after: int | None = None  # seconds after which asking again may work (a Retry-After header)

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "hint": self.hint}


class PlatformUnavailable(DashboardError):
    """The platform cannot be used at all (redis-server missing, cluster unreachable, kubeconfig missing)."""

    status = 503


class PlatformError(DashboardError):
    """The platform refused or failed an operation (403, a foreign object in the way, a port in use)."""

    status = 502


class PlatformRefused(PlatformError):
    """Refused for a reason that waiting will not change (403 on pods/portforward, no address for the kubelet,
    admission: a quota used up, Pod Security): a step's check fails at once with it instead of retrying until the
    step timeout."""


class StepFailed(DashboardError):
    """A lab step ran but its check did not pass."""


class UnknownStep(DashboardError):
    """No lab step has this id."""

    status = 404


class NotFound(DashboardError):
    """The thing asked for does not exist (a manifest, a pod)."""

    status = 404


class PrerequisiteMissing(DashboardError):
    """A step was asked for before the step it builds on (followers before leader)."""

    status = 409


class Conflict(DashboardError):
    """Something stands in the way: the same kind of thing is already running, a room is full."""

    status = 409


class BadRequest(DashboardError):
    """The request itself is wrong (bad parameter, refused cross-site request)."""

    status = 400


class Forbidden(DashboardError):
    """The request is not allowed (cross-site, missing or wrong token)."""

    status = 403


class NotReady(DashboardError):
    """What was asked for is being prepared (a learner's lab still provisioning): ask again in `retry_after` s."""

    status = 503
    retry_after = 2
