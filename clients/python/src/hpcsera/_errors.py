"""Errors: every failure the server answers becomes an :class:`ApiError` (or a subclass by
status) carrying the server's own fields: ``code``, ``message``, ``fields`` (each
``{"field", "problem"}``), ``request_id`` and, for 429, ``retry_after``."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


class HpcseraError(Exception):
    """Base of every error this package raises."""


class ApiError(HpcseraError):
    """The server refused a request: its status and its error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Optional[List[Dict[str, str]]] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[int] = None,
        more_fields: Optional[int] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields: List[Dict[str, str]] = fields or []
        self.request_id = request_id
        self.retry_after = retry_after
        self.more_fields = more_fields

    def field(self, name: str) -> Optional[str]:
        """The problem the server names for field ``name``, if any."""
        return next((f["problem"] for f in self.fields if f.get("field") == name), None)


class BadRequest(ApiError):
    """400: a malformed path, query, header or body value."""


class Unauthorized(ApiError):
    """401: no token, or one that is unknown, revoked or expired."""


class Forbidden(ApiError):
    """403: the token lacks the role or site this needs."""


class NotFound(ApiError):
    """404: no such resource in the token's project."""


class Conflict(ApiError):
    """409: the resource's state does not allow this."""


class PayloadTooLarge(ApiError):
    """413: the body is larger than the server accepts."""


class Invalid(ApiError):
    """422: the body is well-formed but not acceptable; ``fields`` lists every problem."""


class RateLimited(ApiError):
    """429: too many requests; retry after ``retry_after`` seconds."""


class ServerError(ApiError):
    """5xx: the server failed; quote ``request_id``."""


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Invalid,
    429: RateLimited,
}


def from_response(status: int, body: Any, retry_after: Optional[str]) -> ApiError:
    """The error for an answer with ``status`` and a decoded JSON ``body`` (or None)."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        detail = {"code": "http_error", "message": f"HTTP {status}"}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    retry = int(retry_after) if retry_after and retry_after.isdigit() else None
    return cls(
        status,
        str(detail.get("code", "")),
        str(detail.get("message", "")),
        detail.get("fields") or [],
        detail.get("requestId"),
        retry,
        detail.get("moreFields"),
    )


class JobFailed(HpcseraError):
    """:meth:`Client.wait` with ``raise_on_failure``: the job ended other than completed."""

    def __init__(self, job: Dict[str, Any]) -> None:
        super().__init__(
            f"job {job.get('id')} ended {job.get('status')}"
            + (f": {job['message']}" if job.get("message") else "")
        )
        self.job = job


class SweepFailed(HpcseraError):
    """:meth:`Client.wait_sweep` with ``raise_on_failure``: a member ended other than completed."""

    def __init__(self, sweep: Dict[str, Any]) -> None:
        counts = sweep.get("counts", {})
        super().__init__(
            f"sweep {sweep.get('id')}: {counts.get('unsuccessful', 0)} of {sweep.get('members')} members did not complete"
        )
        self.sweep = sweep


class WaitTimeout(HpcseraError):
    """:meth:`Client.wait` reached its timeout before the job ended."""


class DeviceFlowError(HpcseraError):
    """The device flow ended without a token: ``error`` is RFC 8628's code
    (``access_denied``, ``expired_token``, …) and ``description`` the server's words."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
