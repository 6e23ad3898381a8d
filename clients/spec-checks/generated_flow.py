"""The job flow through a client that openapi-python-client generated from openapi.json, as
generated (package ``hpcsera_api`` on PYTHONPATH, not edited): job types, submit (with an
idempotency key, twice), get, list, wait with the events long-poll, output with the output
long-poll and its headers, result files, cancel. Run by crates/hpcsera/tests/e2e/python.rs
against a real server and agent; HPCSERA_URL, HPCSERA_TOKEN and HPCSERA_SITE say where.
Every answer must parse into the generated models; anything else fails."""

import os
import sys
import time
import uuid

from hpcsera_api import AuthenticatedClient
from hpcsera_api.api.jobs import (
    find_jobs_by_status,
    get_job,
    get_result,
    job_events,
    list_results,
    post_job,
    read_output,
    update_by_operation,
)
from hpcsera_api.api.sites import get_job_types, list_sites
from hpcsera_api.models import (
    Job,
    JobEventList,
    JobList,
    JobStatus,
    JobTypeList,
    NewJob,
    NewJobParameters,
    Operation,
    OperationRequest,
    ResultList,
    SiteList,
    StringParam,
    IntegerParam,
)
from hpcsera_api.models.read_output_stream import ReadOutputStream
from hpcsera_api.types import File

SITE = os.environ["HPCSERA_SITE"]
client = AuthenticatedClient(
    base_url=os.environ["HPCSERA_URL"],
    token=os.environ["HPCSERA_TOKEN"],
    raise_on_unexpected_status=True,
    timeout=90.0,
)
TERMINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.LOST}


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def typed(value, cls, what):
    check(isinstance(value, cls), f"{what}: expected {cls.__name__}, got {value!r}")
    return value


sites = typed(list_sites.sync(client=client), SiteList, "sites")
check(any(s.name == SITE for s in sites.sites), f"site {SITE} listed")

types = typed(get_job_types.sync(SITE, client=client), JobTypeList, "job types")
greet = next(t for t in types.job_types if t.name == "greet")
params = {p.name: p for p in greet.parameters}
check(isinstance(params["who"], StringParam), f"who is a StringParam: {params['who']!r}")
check(isinstance(params["n"], IntegerParam), f"n is an IntegerParam: {params['n']!r}")
check(params["n"].maximum == 10, "n's maximum")

body = NewJob(site=SITE, job_type="greet", parameters=NewJobParameters.from_dict({"who": "gen", "n": 2}))
key = str(uuid.uuid4())
first = post_job.sync_detailed(client=client, body=body, idempotency_key=key)
check(first.status_code == 201, f"submit is 201: {first.status_code} {first.content!r}")
job = typed(first.parsed, Job, "submitted job")
again = post_job.sync_detailed(client=client, body=body, idempotency_key=key)
check(again.status_code == 200 and again.parsed.id == job.id, "the same key answers the same job")
check(again.headers.get("idempotent-replayed") == "true", "Idempotent-Replayed")

got = typed(get_job.sync(job.id, client=client), Job, "get")
check(got.id == job.id and got.parameters["who"] == "gen", "get returns the job")
listed = typed(find_jobs_by_status.sync(client=client, limit=5, site=SITE), JobList, "list")
check(any(j.id == job.id for j in listed.jobs), "the job is listed")

# Wait: the events long-poll, until the job has ended.
after, status, deadline = 0, got.status, time.monotonic() + 120
while status not in TERMINAL:
    check(time.monotonic() < deadline, f"job ends in time (now {status})")
    events = typed(job_events.sync(job.id, client=client, after=after, wait=20), JobEventList, "events")
    for e in events.events:
        after = e.seq
        if e.to_status:
            status = e.to_status
check(status == JobStatus.COMPLETED, f"job completed: {status}")

# Output, with its long-poll and headers.
out = read_output.sync_detailed(job.id, ReadOutputStream.STDOUT, client=client, offset=0, wait=5)
check(out.status_code == 200, f"output: {out.status_code}")
data = typed(out.parsed, File, "output").payload.read()
check(data == b"Hello, gen\nHello, gen\n", f"stdout: {data!r}")
check(out.headers["x-next-offset"] == str(len(data)), "X-Next-Offset")
check(out.headers["x-output-complete"] == "true", "X-Output-Complete")
err = read_output.sync(job.id, ReadOutputStream.STDERR, client=client)
check(typed(err, File, "stderr").payload.read() == b"greeted 2 times\n", "stderr")

results = typed(list_results.sync(job.id, client=client), ResultList, "results")
names = sorted(r.name for r in results.results)
check(names == ["greeting.txt", "sub/nested.txt"], f"result names: {names}")
greeting = typed(get_result.sync(job.id, "greeting.txt", client=client), File, "result")
check(greeting.payload.read() == b"Hello, gen\n", "result bytes")
nested = typed(get_result.sync(job.id, "sub/nested.txt", client=client), File, "nested result")
check(nested.payload.read() == b"nested\n", "nested result bytes")

# Cancel a job that sleeps.
sleeper = post_job.sync(
    client=client, body=NewJob(site=SITE, job_type="sleep", parameters=NewJobParameters.from_dict({"seconds": 60}))
)
typed(sleeper, Job, "sleeper")
op = update_by_operation.sync_detailed(sleeper.id, client=client, body=OperationRequest(operation=Operation.CANCEL))
check(op.status_code in (200, 202), f"cancel: {op.status_code}")
deadline = time.monotonic() + 90
while True:
    j = typed(get_job.sync(sleeper.id, client=client), Job, "sleeper")
    if j.status in TERMINAL:
        break
    check(time.monotonic() < deadline, f"the cancelled job ends (now {j.status})")
    time.sleep(0.5)
check(j.status == JobStatus.CANCELLED, f"cancelled: {j.status}")
print("flow done")
