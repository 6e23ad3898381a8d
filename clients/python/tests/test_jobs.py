"""Jobs through the sync client: submit with idempotency keys, get, list with paging, wait
with the events long-poll, output (read and followed), results, cancel/hold/release, delete,
and the server's errors as exceptions."""

import os
import time
import uuid

import pytest

import hpcsera


def test_the_tested_package_is_the_installed_one():
    target = os.environ.get("HPCSERA_TEST_REQUIRE_INSTALLED")
    if target:
        assert hpcsera.__file__.startswith(target), hpcsera.__file__


def test_sites_and_job_types(client, site):
    assert site in [s["name"] for s in client.sites()]
    types = {t["name"]: t for t in client.job_types(site)}
    assert {"greet", "noop", "hello", "sleep"} <= set(types)
    n = next(p for p in types["greet"]["parameters"] if p["name"] == "n")
    assert (n["type"], n["minimum"], n["maximum"]) == ("integer", 1, 10)
    assert client.whoami()["project"] == "p"


def test_submit_is_idempotent_with_a_key(client, site):
    key = str(uuid.uuid4())
    first = client.submit(site, "noop", idempotency_key=key)
    again = client.submit(site, "noop", idempotency_key=key)
    assert again["id"] == first["id"]
    other = client.submit(site, "noop")
    assert other["id"] != first["id"]
    with pytest.raises(hpcsera.Invalid) as e:
        client.submit(site, "greet", {"n": 3}, idempotency_key=key)
    assert e.value.code == "idempotency_key_reused"
    assert e.value.field("Idempotency-Key")


def test_wait_output_and_results(client, site, tmp_path):
    job = client.submit(site, "greet", {"who": "sdk", "n": 3}, metadata={"run": 7})
    assert job["status"] in ("queued", "dispatched") and job["metadata"] == {"run": 7}
    done = client.wait(job["id"], timeout=120, raise_on_failure=True)
    assert done["status"] == "completed" and done["exitCode"] == 0
    assert b"".join(client.follow_output(job["id"])) == b"Hello, sdk\n" * 3
    err = client.read_output(job["id"], "stderr")
    assert (err.data, err.complete, err.truncated) == (b"greeted 3 times\n", True, False)
    part = client.read_output(job["id"], offset=7, max_bytes=4)
    assert (part.data, part.next_offset, part.total) == (b"sdk\n", 11, 33)
    assert sorted(r["name"] for r in client.results(job["id"])) == ["greeting.txt", "sub/nested.txt"]
    assert client.result(job["id"], "sub/nested.txt") == b"nested\n"
    client.download_result(job["id"], "greeting.txt", tmp_path / "g.txt")
    assert (tmp_path / "g.txt").read_bytes() == b"Hello, sdk\n"
    assert client.get(job["id"])["outputBytes"] == {"stdout": 33, "stderr": 16}


def test_follow_output_while_the_job_runs(client, site):
    job = client.submit(site, "sleep", {"seconds": 2})
    started = time.monotonic()
    chunks = list(client.follow_output(job["id"]))
    assert b"".join(chunks) == b"start\nend\n"
    assert time.monotonic() - started >= 1.5
    assert client.wait(job["id"], timeout=60)["status"] == "completed"


def test_list_with_paging(client, site):
    ids = {client.submit(site, "noop", metadata={"paging": True})["id"] for _ in range(3)}
    page = client.list_jobs(site=site, job_type="noop", limit=2)
    assert len(page["jobs"]) == 2 and page.get("nextCursor")
    second = client.list_jobs(site=site, job_type="noop", limit=2, cursor=page["nextCursor"])
    assert not {j["id"] for j in page["jobs"]} & {j["id"] for j in second["jobs"]}
    seen = [j["id"] for j in client.iter_jobs(site=site, job_type="noop", page_size=2)]
    assert ids <= set(seen) and len(seen) == len(set(seen))
    for i in ids:
        client.wait(i, timeout=60)
    done = client.list_jobs(["completed", "failed"], site=site, job_type="noop", limit=1000)
    assert ids <= {j["id"] for j in done["jobs"]}


def test_cancel_hold_release_and_delete(client, site):
    job = client.submit(site, "sleep", {"seconds": 60})
    held = client.hold(job["id"])
    assert held["held"] or (held.get("pendingOperation") or {}).get("operation") == "hold"
    released = client.release(job["id"])
    assert released["id"] == job["id"]
    client.cancel(job["id"])
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"
    assert client.delete(job["id"]) is True
    with pytest.raises(hpcsera.NotFound):
        client.get(job["id"])


def test_errors_carry_the_servers_fields(client, site, url):
    with pytest.raises(hpcsera.Invalid) as e:
        client.submit(site, "greet", {"n": 99, "nope": 1})
    fields = {f["field"] for f in e.value.fields}
    assert {"parameters.n", "parameters.nope"} <= fields, e.value.fields
    assert e.value.status == 422 and e.value.request_id
    with pytest.raises(hpcsera.NotFound) as nf:
        client.get(str(uuid.uuid4()))
    assert nf.value.code == "not_found"
    with pytest.raises(hpcsera.BadRequest) as bad:
        client.get("not-a-uuid")
    assert bad.value.field("jobId")
    with hpcsera.Client(url, "hpcs_not_a_token") as stranger:
        with pytest.raises(hpcsera.Unauthorized):
            stranger.sites()
    with pytest.raises(ValueError):
        client.read_output(str(uuid.uuid4()), "stdin")
