"""What the sync and async clients share: how each call is made (method, path, query, body)
and how its answer is read. A call is a :class:`Call`; the clients only send it, retry it
when that is safe, and turn refusals into :mod:`hpcsera._errors` exceptions."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote

import httpx

from ._pack import pack_directory
from ._types import OutputChunk, Provenance

API = "/api/v1"

#: Statuses after which a request is sent again: the server or a proxy was briefly away.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

Query = List[Tuple[str, str]]


@dataclass
class Call:
    """One request and how to read its answer."""

    method: str
    path: str
    decode: Callable[[httpx.Response], Any]
    query: Query = field(default_factory=list)
    json: Any = None
    content: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    #: Seconds the server may hold the request (a long poll), added to the client's timeout.
    wait: float = 0.0


def settings(url: Optional[str], token: Optional[str]) -> Tuple[str, str]:
    """The server URL and token: given, else ``HPCSERA_URL`` and ``HPCSERA_TOKEN``."""
    url = url or os.environ.get("HPCSERA_URL")
    token = token or os.environ.get("HPCSERA_TOKEN")
    if not url:
        raise ValueError("no server URL: pass url= or set HPCSERA_URL")
    if not token:
        raise ValueError("no token: pass token= or set HPCSERA_TOKEN")
    return url.rstrip("/"), token


def verify_setting(verify: Union[bool, str, None]) -> Union[bool, str]:
    """TLS verification: as given, else the CA bundle ``HPCSERA_CA_FILE`` names, else on."""
    if verify is not None:
        return verify
    return os.environ.get("HPCSERA_CA_FILE") or True


def _json(r: httpx.Response) -> Any:
    return r.json()


def _key(name: str) -> Callable[[httpx.Response], Any]:
    return lambda r: r.json()[name]


def _time(v: Union[str, datetime]) -> str:
    return v.isoformat() if isinstance(v, datetime) else v


def _add(q: Query, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        q.append((name, "true" if value else "false"))
    elif isinstance(value, datetime):
        q.append((name, _time(value)))
    else:
        q.append((name, str(value)))


def job_path(job_id: str, rest: str = "") -> str:
    return f"{API}/job/{quote(str(job_id), safe='')}{rest}"


def whoami() -> Call:
    return Call("GET", f"{API}/tokens/self", _json)


def sites() -> Call:
    return Call("GET", f"{API}/sites", _key("sites"))


def job_types(site: str) -> Call:
    return Call("GET", f"{API}/sites/{quote(site, safe='')}/jobTypes", _key("jobTypes"))


def submit(
    site: str,
    job_type: str,
    parameters: Optional[Dict[str, Any]],
    metadata: Any,
    callback_url: Optional[str],
    idempotency_key: Optional[str],
    resources: Optional[Dict[str, Any]] = None,
) -> Call:
    body: Dict[str, Any] = {"site": site, "jobType": job_type, "parameters": parameters or {}}
    _optional(body, metadata=metadata, callbackUrl=callback_url, resources=resources)
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", f"{API}/job", _json, json=body, headers={"Idempotency-Key": key})


def _optional(body: Dict[str, Any], **values: Any) -> None:
    """Adds the values that are given (not ``None``) to a request body."""
    body.update({k: v for k, v in values.items() if v is not None})


def get(job_id: str) -> Call:
    return Call("GET", job_path(job_id), _json)


def list_jobs(
    status: Union[str, Sequence[str], None],
    site: Optional[str],
    job_type: Optional[str],
    created_after: Union[str, datetime, None],
    created_before: Union[str, datetime, None],
    limit: Optional[int],
    cursor: Optional[str],
) -> Call:
    q: Query = []
    for s in [status] if isinstance(status, str) else status or []:
        q.append(("status", s))
    _add(q, "site", site)
    _add(q, "jobType", job_type)
    _add(q, "createdAfter", created_after)
    _add(q, "createdBefore", created_before)
    _add(q, "limit", limit)
    _add(q, "cursor", cursor)
    return Call("GET", f"{API}/job/findJobsByStatus", _json, query=q)


def events(job_id: str, after: int, wait: int, limit: Optional[int]) -> Call:
    q: Query = [("after", str(after)), ("wait", str(wait))]
    _add(q, "limit", limit)
    return Call("GET", job_path(job_id, "/events"), _key("events"), query=q, wait=wait)


def _chunk(r: httpx.Response) -> OutputChunk:
    h = r.headers
    return OutputChunk(
        data=r.content,
        next_offset=int(h.get("x-next-offset", "0")),
        total=int(h.get("x-output-total", "0")),
        complete=h.get("x-output-complete") == "true",
        truncated=h.get("x-output-truncated") == "true",
    )


def read_output(job_id: str, stream: str, offset: int, max_bytes: Optional[int], wait: int) -> Call:
    if stream not in ("stdout", "stderr"):
        raise ValueError("stream must be 'stdout' or 'stderr'")
    q: Query = [("offset", str(offset)), ("wait", str(wait))]
    _add(q, "maxBytes", max_bytes)
    return Call("GET", job_path(job_id, f"/output/{stream}"), _chunk, query=q, wait=wait)


def results(job_id: str) -> Call:
    return Call("GET", job_path(job_id, "/results"), _key("results"))


def result(job_id: str, name: str) -> Call:
    return Call("GET", job_path(job_id, f"/results/{quote(name, safe='/')}"), lambda r: r.content)


def operation(job_id: str, op: str) -> Call:
    return Call("PUT", f"{API}/job/updateByOperation/{quote(str(job_id), safe='')}", _json, json={"operation": op})


def change(
    job_id: str, parameters: Any, metadata: Any, callback_url: Optional[str], resources: Any = None
) -> Call:
    body: Dict[str, Any] = {}
    _optional(body, parameters=parameters, metadata=metadata, callbackUrl=callback_url, resources=resources)
    return Call("PUT", job_path(job_id), _json, json=body)


def delete(job_id: str) -> Call:
    return Call("DELETE", job_path(job_id), lambda r: r.status_code == 204)


def push_code(source: Union[str, os.PathLike, bytes]) -> Call:
    """A directory is packed reproducibly; a file must be a tar.gz; bytes are sent as they are."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif Path(source).is_dir():
        data = pack_directory(source)
    else:
        data = Path(source).read_bytes()
        if not data.startswith(b"\x1f\x8b"):
            raise ValueError(f"{source} is not a tar.gz (no gzip header)")
    return Call("POST", f"{API}/code", _json, content=data, headers={"Content-Type": "application/gzip"})


def code_status(code_id: str) -> Call:
    return Call("GET", f"{API}/code/{quote(code_id, safe='')}/status", _json)


def list_code() -> Call:
    return Call("GET", f"{API}/code", _key("bundles"))


def _provenance(r: httpx.Response) -> Provenance:
    return Provenance(
        manifest=r.content,
        signature=r.headers.get("x-provenance-signature", ""),
        key=r.headers.get("x-provenance-key", ""),
    )


def provenance(job_id: str) -> Call:
    return Call("GET", job_path(job_id, "/provenance"), _provenance)


def provenance_zip(job_id: str) -> Call:
    return Call("GET", job_path(job_id, "/provenance.zip"), lambda r: r.content)


def search_provenance(**filters: Any) -> Call:
    names = {"code_sha256": "codeSha256", "job_type": "jobType", "ended_after": "endedAfter", "ended_before": "endedBefore"}
    q: Query = []
    for k, v in filters.items():
        _add(q, names.get(k, k), v)
    return Call("GET", f"{API}/provenance", _json, query=q)


def sweep_path(sweep_id: str, rest: str = "") -> str:
    return f"{API}/sweeps/{quote(str(sweep_id), safe='')}{rest}"


def submit_sweep(
    site: str,
    job_type: str,
    parameters: Optional[Dict[str, Any]],
    parameter_sets: Optional[Sequence[Dict[str, Any]]],
    grid: Optional[Dict[str, Sequence[Any]]],
    resources: Optional[Dict[str, Any]],
    metadata: Any,
    callback_url: Optional[str],
    idempotency_key: Optional[str],
) -> Call:
    if (parameter_sets is None) == (grid is None):
        raise ValueError("give either parameter_sets or grid")
    body: Dict[str, Any] = {"site": site, "jobType": job_type, "parameters": parameters or {}}
    _optional(
        body,
        parameterSets=None if parameter_sets is None else list(parameter_sets),
        grid=None if grid is None else {k: list(v) for k, v in grid.items()},
        resources=resources,
        metadata=metadata,
        callbackUrl=callback_url,
    )
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", f"{API}/sweeps", _json, json=body, headers={"Idempotency-Key": key})


def get_sweep(sweep_id: str) -> Call:
    return Call("GET", sweep_path(sweep_id), _json)


def list_sweeps(site: Optional[str], limit: Optional[int], cursor: Optional[str]) -> Call:
    q: Query = []
    _add(q, "site", site)
    _add(q, "limit", limit)
    _add(q, "cursor", cursor)
    return Call("GET", f"{API}/sweeps", _json, query=q)


def sweep_jobs(sweep_id: str, status: Union[str, Sequence[str], None], limit: Optional[int], cursor: Optional[str]) -> Call:
    q: Query = []
    statuses = [status] if isinstance(status, str) else list(status or [])
    if statuses:
        q.append(("status", ",".join(statuses)))
    _add(q, "limit", limit)
    _add(q, "cursor", cursor)
    return Call("GET", sweep_path(sweep_id, "/jobs"), _json, query=q)


def sweep_events(sweep_id: str, after: int, wait: int, limit: Optional[int]) -> Call:
    q: Query = [("after", str(after)), ("wait", str(wait))]
    _add(q, "limit", limit)
    return Call("GET", sweep_path(sweep_id, "/events"), _key("events"), query=q, wait=wait)


def sweep_operation(sweep_id: str, op: str) -> Call:
    return Call("PUT", sweep_path(sweep_id, "/operation"), _json, json={"operation": op})


def delete_sweep(sweep_id: str) -> Call:
    return Call("DELETE", sweep_path(sweep_id), lambda r: r.status_code == 204)
