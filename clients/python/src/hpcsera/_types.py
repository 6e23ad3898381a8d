"""The API's objects as typed dictionaries (camelCase keys, as the server sends them), and
the few values the SDK makes itself (:class:`OutputChunk`, :class:`Provenance`,
:class:`DeviceAuthorization`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

if sys.version_info >= (3, 11):
    from typing import TypedDict
else:  # pragma: no cover
    from typing_extensions import TypedDict

#: A job's statuses that never change again.
TERMINAL = frozenset({"completed", "failed", "cancelled", "lost"})


class Job(TypedDict, total=False):
    id: str
    project: str
    site: str
    jobType: str
    owner: str
    status: str
    parameters: Dict[str, Any]
    metadata: Any
    callbackUrl: str
    held: bool
    pendingOperation: Dict[str, Any]
    batchJobId: str
    exitCode: int
    message: str
    subJobs: List[Dict[str, Any]]
    createdAt: str
    updatedAt: str
    finishedAt: str
    outputBytes: Dict[str, int]
    resources: Dict[str, Any]
    grantedResources: Dict[str, Any]
    sweep: str
    sweepIndex: int


class JobList(TypedDict, total=False):
    jobs: List[Job]
    nextCursor: str


class JobEvent(TypedDict, total=False):
    seq: int
    jobId: str
    at: str
    kind: str
    fromStatus: str
    toStatus: str
    actor: str
    message: str


class ResultFile(TypedDict):
    name: str
    size: int
    sha256: str
    createdAt: str


class CodeBundle(TypedDict, total=False):
    id: str
    project: str
    size: int
    status: str
    uploadedBy: str
    createdAt: str
    hpcSha256: str
    digestsMatch: bool
    decidedBy: str
    decidedAt: str
    reason: str


class Site(TypedDict, total=False):
    name: str
    lastSeenAt: str
    agentVersion: str
    agentHost: str
    agentKey: str
    jobTypes: List[str]


class JobType(TypedDict, total=False):
    name: str
    description: str
    parameters: List[Dict[str, Any]]
    subJobs: List[Dict[str, Any]]


@dataclass(frozen=True)
class OutputChunk:
    """A read of a job's stdout or stderr: the bytes and where the stream stands."""

    data: bytes
    next_offset: int
    total: int
    complete: bool
    truncated: bool


@dataclass(frozen=True)
class Provenance:
    """A job's signed RO-Crate manifest: the exact bytes the agent signed, the base64
    Ed25519 signature and the agent's key (``ed25519:<base64>``)."""

    manifest: bytes
    signature: str
    key: str


@dataclass(frozen=True)
class DeviceAuthorization:
    """The answer to a device authorization request (RFC 8628 3.2): show ``user_code`` and
    ``verification_uri`` (or ``verification_uri_complete``) to the person."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: Optional[str]
    expires_in: int
    interval: int


class SweepCounts(TypedDict, total=False):
    byStatus: Dict[str, int]
    ended: int
    unsuccessful: int


class Sweep(TypedDict, total=False):
    id: str
    project: str
    site: str
    jobType: str
    owner: str
    parameters: Dict[str, Any]
    resources: Dict[str, Any]
    metadata: Any
    callbackUrl: str
    members: int
    counts: SweepCounts
    createdAt: str


def sweep_ended(sweep: Sweep) -> bool:
    """Whether every member of the sweep that is still counted has ended."""
    counts = sweep.get("counts", {})
    return counts.get("ended", 0) >= sum(counts.get("byStatus", {}).values())
