"""The synchronous client, :class:`Client`. Each method builds its call in
:mod:`hpcsera._requests`; this module sends it (retrying connection errors, 429 after
``Retry-After`` and 502–504, never another refusal) and runs the loops that wait."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import httpx

from . import _requests as rq
from ._errors import JobFailed, SweepFailed, WaitTimeout, from_response
from ._types import (
    TERMINAL,
    CodeBundle,
    Job,
    JobEvent,
    JobList,
    JobType,
    OutputChunk,
    Provenance,
    ResultFile,
    Site,
    Sweep,
    sweep_ended,
)

#: How long a long poll asks the server to hold a request (the server allows up to 60 s).
LONG_POLL = 20


class Client:
    """A client of one hpcsera server with one token (``url``/``token``, else the
    environment's ``HPCSERA_URL``/``HPCSERA_TOKEN``). Use it as a context manager, or
    :meth:`close` it. ``verify`` is httpx's: ``True``, ``False`` or a CA bundle's path; by
    default ``HPCSERA_CA_FILE`` when set (an internal CA), else the system's CAs. Proxies come
    from ``HTTPS_PROXY``/``NO_PROXY``."""

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        verify: Union[bool, str, None] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        self.url, token = rq.settings(url, token)
        self.timeout = timeout
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "hpcsera-python"},
            verify=rq.verify_setting(verify),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _do(self, call: rq.Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                r = self._http.request(
                    call.method,
                    call.path,
                    params=call.query,
                    json=call.json,
                    content=call.content,
                    headers=call.headers,
                    timeout=self.timeout + call.wait,
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if attempt > self.retries:
                    raise
                time.sleep(min(2 ** attempt * 0.25, 5))
                continue
            if r.status_code < 400:
                return call.decode(r)
            if r.status_code in rq.RETRY_STATUSES and attempt <= self.retries:
                retry = r.headers.get("retry-after", "")
                time.sleep(int(retry) if retry.isdigit() else min(2 ** attempt * 0.25, 5))
                continue
            try:
                body = r.json()
            except ValueError:
                body = None
            raise from_response(r.status_code, body, r.headers.get("retry-after"))

    # Who, where, what.

    def whoami(self) -> Dict[str, Any]:
        """The token: its user, project, roles, site and expiry."""
        return self._do(rq.whoami())

    def sites(self) -> List[Site]:
        return self._do(rq.sites())

    def job_types(self, site: str) -> List[JobType]:
        """The job types the project's agent publishes at ``site``, with their parameters."""
        return self._do(rq.job_types(site))

    # Jobs.

    def submit(
        self,
        site: str,
        job_type: str,
        parameters: Optional[Dict[str, Any]] = None,
        *,
        metadata: Any = None,
        callback_url: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        resources: Optional[Dict[str, Any]] = None,
    ) -> Job:
        """Submits a job. Every submission carries an ``Idempotency-Key`` (a new UUID unless
        given), so a retry after a lost answer never makes a second job; giving the same key
        again returns the first job. ``resources`` are PSI/J-named (``node_count``,
        ``duration``, …) within the job type's rules."""
        return self._do(rq.submit(site, job_type, parameters, metadata, callback_url, idempotency_key, resources))

    def get(self, job_id: str) -> Job:
        return self._do(rq.get(job_id))

    def list_jobs(
        self,
        status: Union[str, Sequence[str], None] = None,
        *,
        site: Optional[str] = None,
        job_type: Optional[str] = None,
        created_after: Any = None,
        created_before: Any = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> JobList:
        """One page of the project's jobs, newest first; pass its ``nextCursor`` as ``cursor``
        for the next."""
        return self._do(rq.list_jobs(status, site, job_type, created_after, created_before, limit, cursor))

    def iter_jobs(self, status: Union[str, Sequence[str], None] = None, *, page_size: int = 100, **filters: Any) -> Iterator[Job]:
        """Every job that matches, newest first, page after page."""
        cursor = None
        while True:
            page = self.list_jobs(status, limit=page_size, cursor=cursor, **filters)
            yield from page["jobs"]
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def events(self, job_id: str, *, after: int = 0, wait: int = 0, limit: Optional[int] = None) -> List[JobEvent]:
        """The job's events after ``after`` (a ``seq``); with ``wait`` seconds, the server holds
        the request until there is one (long poll)."""
        return self._do(rq.events(job_id, after, wait, limit))

    def wait(self, job_id: str, *, timeout: Optional[float] = None, raise_on_failure: bool = False) -> Job:
        """Waits until the job has ended (following its events with the long poll) and returns
        it. Raises :class:`WaitTimeout` after ``timeout`` seconds, and with
        ``raise_on_failure`` :class:`JobFailed` unless it completed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        after = 0
        while job["status"] not in TERMINAL:
            left = LONG_POLL if deadline is None else min(LONG_POLL, deadline - time.monotonic())
            if left <= 0:
                raise WaitTimeout(f"job {job_id} is still {job['status']} after {timeout} s")
            evs = self.events(job_id, after=after, wait=max(1, int(left)))
            if evs:
                after = evs[-1]["seq"]
                if any(e.get("toStatus") in TERMINAL for e in evs):
                    job = self.get(job_id)
        if raise_on_failure and job["status"] != "completed":
            raise JobFailed(job)
        return job

    def read_output(
        self, job_id: str, stream: str = "stdout", *, offset: int = 0, max_bytes: Optional[int] = None, wait: int = 0
    ) -> OutputChunk:
        """Bytes of the job's stdout or stderr from ``offset``, and where the stream stands."""
        return self._do(rq.read_output(job_id, stream, offset, max_bytes, wait))

    def follow_output(self, job_id: str, stream: str = "stdout", *, offset: int = 0) -> Iterator[bytes]:
        """The job's output as it is written, until the job has ended and all was read: each
        read that finds nothing new waits on the server (long poll), so this never busy-polls.
        Reads are by offset, so a reconnect neither loses nor repeats bytes."""
        while True:
            chunk = self.read_output(job_id, stream, offset=offset, wait=LONG_POLL)
            if chunk.data:
                yield chunk.data
            offset = chunk.next_offset
            if chunk.complete and not chunk.data:
                return

    def results(self, job_id: str) -> List[ResultFile]:
        return self._do(rq.results(job_id))

    def result(self, job_id: str, name: str) -> bytes:
        """A result file's bytes (``name`` as listed, e.g. ``sub/out.txt``)."""
        return self._do(rq.result(job_id, name))

    def download_result(self, job_id: str, name: str, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes a result file to ``path``."""
        with open(path, "wb") as f:
            f.write(self.result(job_id, name))

    def cancel(self, job_id: str) -> Job:
        return self._do(rq.operation(job_id, "cancel"))

    def hold(self, job_id: str) -> Job:
        return self._do(rq.operation(job_id, "hold"))

    def release(self, job_id: str) -> Job:
        return self._do(rq.operation(job_id, "release"))

    def change(
        self, job_id: str, *, parameters: Any = None, metadata: Any = None, callback_url: Optional[str] = None, resources: Any = None
    ) -> Job:
        """Changes a job no agent has claimed yet."""
        return self._do(rq.change(job_id, parameters, metadata, callback_url, resources))

    def delete(self, job_id: str) -> bool:
        """Deletes a job: ``True`` when it is gone, ``False`` when an agent holds it (it is
        cancelled first and removed when it has ended)."""
        return self._do(rq.delete(job_id))

    # Sweeps.

    def submit_sweep(
        self,
        site: str,
        job_type: str,
        parameters: Optional[Dict[str, Any]] = None,
        *,
        parameter_sets: Optional[Sequence[Dict[str, Any]]] = None,
        grid: Optional[Dict[str, Sequence[Any]]] = None,
        resources: Optional[Dict[str, Any]] = None,
        metadata: Any = None,
        callback_url: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Sweep:
        """Submits a sweep: one job per parameter set, or per combination of the ``grid``'s
        value lists (names sorted, the last varying fastest), over the base ``parameters``.
        Validated as a whole and stored at once; idempotent like :meth:`submit`."""
        return self._do(
            rq.submit_sweep(site, job_type, parameters, parameter_sets, grid, resources, metadata, callback_url, idempotency_key)
        )

    def get_sweep(self, sweep_id: str) -> Sweep:
        """A sweep with its members' counts by status."""
        return self._do(rq.get_sweep(sweep_id))

    def list_sweeps(self, *, site: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None) -> Dict[str, Any]:
        """One page of the project's sweeps (``sweeps``, ``nextCursor``), newest first."""
        return self._do(rq.list_sweeps(site, limit, cursor))

    def sweep_jobs(
        self, sweep_id: str, status: Union[str, Sequence[str], None] = None, *, limit: Optional[int] = None, cursor: Optional[str] = None
    ) -> JobList:
        """One page of a sweep's members in index order (each names ``sweep`` and ``sweepIndex``)."""
        return self._do(rq.sweep_jobs(sweep_id, status, limit, cursor))

    def iter_sweep_jobs(self, sweep_id: str, status: Union[str, Sequence[str], None] = None, *, page_size: int = 1000) -> Iterator[Job]:
        """Every member of the sweep, in index order, page after page."""
        cursor = None
        while True:
            page = self.sweep_jobs(sweep_id, status, limit=page_size, cursor=cursor)
            for job in page["jobs"]:
                yield job
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def sweep_events(self, sweep_id: str, *, after: int = 0, wait: int = 0, limit: Optional[int] = None) -> List[JobEvent]:
        """The events of all the sweep's members after ``after``; ``wait`` long-polls."""
        return self._do(rq.sweep_events(sweep_id, after, wait, limit))

    def wait_sweep(self, sweep_id: str, *, timeout: Optional[float] = None, raise_on_failure: bool = False) -> Sweep:
        """Waits until every member has ended, following the sweep's events with the long
        poll, and returns the sweep. Raises :class:`WaitTimeout` after ``timeout`` seconds,
        and with ``raise_on_failure`` :class:`SweepFailed` when a member did not complete."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sweep = self.get_sweep(sweep_id)
        after = 0
        while not sweep_ended(sweep):
            left = LONG_POLL if deadline is None else min(LONG_POLL, deadline - time.monotonic())
            if left <= 0:
                raise WaitTimeout(f"sweep {sweep_id} has not ended after {timeout} s")
            evs = self.sweep_events(sweep_id, after=after, wait=max(1, int(left)))
            if evs:
                after = evs[-1]["seq"]
                sweep = self.get_sweep(sweep_id)
        if raise_on_failure and sweep["counts"].get("unsuccessful", 0):
            raise SweepFailed(sweep)
        return sweep

    def cancel_sweep(self, sweep_id: str) -> Dict[str, Any]:
        """Cancels every member that has not ended; the answer counts what happened."""
        return self._do(rq.sweep_operation(sweep_id, "cancel"))

    def hold_sweep(self, sweep_id: str) -> Dict[str, Any]:
        return self._do(rq.sweep_operation(sweep_id, "hold"))

    def release_sweep(self, sweep_id: str) -> Dict[str, Any]:
        return self._do(rq.sweep_operation(sweep_id, "release"))

    def delete_sweep(self, sweep_id: str) -> bool:
        """Deletes a sweep and its members: ``True`` when all are gone, ``False`` when some
        were running (they are cancelled and removed when they end)."""
        return self._do(rq.delete_sweep(sweep_id))

    # Code bundles.

    def push_code(self, source: Union[str, "os.PathLike[str]", bytes]) -> CodeBundle:
        """Uploads a code bundle: a directory (packed exactly as ``hpcsera code push`` packs
        it, so the id is the same), a tar.gz file, or its bytes."""
        return self._do(rq.push_code(source))

    def code_status(self, code_id: str) -> CodeBundle:
        return self._do(rq.code_status(code_id))

    def list_code(self) -> List[CodeBundle]:
        return self._do(rq.list_code())

    # Provenance.

    def provenance(self, job_id: str) -> Provenance:
        """The job's signed RO-Crate manifest: the exact bytes, signature and agent key."""
        return self._do(rq.provenance(job_id))

    def provenance_zip(self, job_id: str) -> bytes:
        """The job's RO-Crate as a ZIP: manifest, signature, result files."""
        return self._do(rq.provenance_zip(job_id))

    def search_provenance(self, **filters: Any) -> Dict[str, Any]:
        """Jobs whose manifests name a digest: ``sha256``, ``code_sha256``, ``job_type``,
        ``site``, ``ended_after``, ``ended_before``, ``limit``, ``cursor``."""
        return self._do(rq.search_provenance(**filters))
