"""schemathesis hooks for the spec checks (crates/hpcsera/tests/e2e/python.rs).

Some values are valid only by the server's state, which no schema can say; positive cases
(those schemathesis means to be accepted) get such values from here, negative ones stay as
generated (they must be refused):

- a submission names the published job type that takes no parameters (``noop`` at
  HPCSERA_SITE), no resources (a job type's rules say which), no callback URL (the server's
  allow-list), and a fresh ``Idempotency-Key`` (a key used before with another body is
  refused, 422);
- a client's change of a job (``PUT /job/{jobId}``) does not also report status, and its
  ``parameters`` are the job type's (none), without resources;
- a listing's ``cursor`` is one the server handed out, so a positive case sends none.

And long polls (``wait``, ``waitSeconds``, up to 60 s) wait at most 1 s, so that the time
budget goes to requests rather than to waiting.

Code bundles (``application/gzip``) are sent as raw bytes, like ``application/octet-stream``.
"""

import os
import uuid

import schemathesis
from hypothesis.internal import lambda_sources

# CPython up to 3.11.7 can raise SystemError("AST constructor recursion depth mismatch") when
# it parses a large module deep in a stack (python/cpython#106905, fixed in 3.11.8); Hypothesis
# parses sources only to describe lambdas in its reports, so such a description is "lambda".
_describe = lambda_sources._lambda_description


def _describe_safely(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda <unknown>"


lambda_sources._lambda_description = _describe_safely

SITE = os.environ.get("HPCSERA_SITE", "local")
REPORT_FIELDS = ("status", "exitCode", "batchJobId", "message", "subJobs", "grantedResources")
CHANGE_FIELDS = ("parameters", "resources", "metadata", "callbackUrl")

schemathesis.serializer.alias("application/gzip", "application/octet-stream")


def _submission(case):
    body = dict(case.body)
    body.update({"site": SITE, "jobType": "noop", "parameters": {}})
    body.pop("callbackUrl", None)
    body.pop("resources", None)
    case.body = body
    case.headers = {**(case.headers or {}), "Idempotency-Key": str(uuid.uuid4())}


def _change(case):
    body = {k: v for k, v in case.body.items() if v is not None}
    if any(k in body for k in CHANGE_FIELDS):
        body = {k: v for k, v in body.items() if k not in REPORT_FIELDS}
        body.pop("callbackUrl", None)
        body.pop("resources", None)
        if "parameters" in body:
            body["parameters"] = {}
    if not body:
        body["metadata"] = {}
    case.body = body


@schemathesis.hook
def map_case(ctx, case):
    op = case.operation
    # The stateful phase's cases are positive (and may carry no generation metadata).
    positive = case.meta is None or case.meta.generation.mode.is_positive
    if not positive:
        return case
    method = op.method.upper()
    if method == "POST" and op.path == "/api/v1/job" and isinstance(case.body, dict):
        _submission(case)
    elif method == "PUT" and op.path == "/api/v1/job/{jobId}" and isinstance(case.body, dict):
        _change(case)
    if case.query and "cursor" in case.query:
        case.query = {k: v for k, v in case.query.items() if k != "cursor"}
    if case.query and isinstance(case.query.get("wait"), int) and case.query["wait"] > 1:
        case.query = {**case.query, "wait": 1}
    if isinstance(case.body, dict) and isinstance(case.body.get("waitSeconds"), int) and case.body["waitSeconds"] > 1:
        case.body = {**case.body, "waitSeconds": 1}
    return case
