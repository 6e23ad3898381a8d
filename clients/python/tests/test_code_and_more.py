"""Code push (the same bytes and digest as the CLI), provenance, the async client, the device
flow (approved by a person in the web UI) and the README's example."""

import asyncio
import json
import os
import re
import stat
import subprocess
import zipfile
import io
from pathlib import Path

import httpx
import pytest

import hpcsera


def tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "data" / ("d" * 110)).mkdir(parents=True)
    run = root / "bin" / "run.sh"
    run.write_text("#!/bin/sh\necho run\n")
    run.chmod(0o755)
    (root / "data" / "input.txt").write_text("input\n" * 20000)
    (root / "data" / ("d" * 110) / "deep.txt").write_text("deep\n")
    (root / "bin" / "link").symlink_to("../data/input.txt")
    os.chmod(root / "data" / "input.txt", stat.S_IRUSR | stat.S_IWUSR)
    return root


def test_code_push_gives_the_clis_digest(client, url, token, tmp_path):
    src = tree(tmp_path / "src")
    packed = hpcsera.pack_directory(src)
    cli = os.environ["HPCSERA_TEST_CLI"]
    out = subprocess.run(
        [cli, "code", "push", str(src)],
        env={**os.environ, "HPCSERA_URL": url, "HPCSERA_TOKEN": token},
        capture_output=True, text=True, timeout=60, check=True,
    )
    cli_id = out.stdout.strip().splitlines()[-1]
    assert cli_id == hpcsera.bundle_id(packed)
    bundle = client.push_code(src)
    assert bundle["id"] == cli_id and bundle["status"] == "pending_approval"
    assert client.code_status(cli_id)["size"] == len(packed)
    assert cli_id in [b["id"] for b in client.list_code()]
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(packed)
    assert client.push_code(archive)["id"] == cli_id
    with pytest.raises(ValueError):
        client.push_code(src / "bin" / "run.sh")


def test_provenance_of_an_ended_job(client, site):
    job = client.submit(site, "greet", {"who": "prov"})
    client.wait(job["id"], timeout=120, raise_on_failure=True)
    p = client.provenance(job["id"])
    assert p.signature and p.key.startswith("ed25519:")
    manifest = json.loads(p.manifest)
    assert "@graph" in manifest
    names = zipfile.ZipFile(io.BytesIO(client.provenance_zip(job["id"]))).namelist()
    assert "ro-crate-metadata.json" in names
    digest = client.results(job["id"])[0]["sha256"]
    hits = client.search_provenance(sha256=digest)["jobs"]
    assert job["id"] in [h["jobId"] for h in hits]


async def test_the_async_client(aclient, site):
    jobs = await asyncio.gather(*(aclient.submit(site, "greet", {"who": f"a{i}"}) for i in range(3)))
    done = await asyncio.gather(*(aclient.wait(j["id"], timeout=120) for j in jobs))
    assert [d["status"] for d in done] == ["completed"] * 3
    out = b"".join([c async for c in aclient.follow_output(jobs[0]["id"])])
    assert out == b"Hello, a0\n"
    assert await aclient.result(jobs[1]["id"], "greeting.txt") == b"Hello, a1\n"
    ids = [j["id"] async for j in aclient.iter_jobs(site=site, job_type="greet", page_size=1)]
    assert {j["id"] for j in jobs} <= set(ids)
    with pytest.raises(hpcsera.Invalid):
        await aclient.submit(site, "greet", {"n": 0})
    job = await aclient.submit(site, "sleep", {"seconds": 60})
    await aclient.cancel(job["id"])
    assert (await aclient.wait(job["id"], timeout=60))["status"] == "cancelled"


def approve_in_the_web_ui(url: str, user_code: str, roles: list) -> None:
    """What a person does: log in, open the device page, approve."""
    person, password = os.environ["HPCSERA_TEST_PERSON"], os.environ["HPCSERA_TEST_PASSWORD"]
    with httpx.Client(base_url=url, follow_redirects=True) as ui:
        page = ui.get("/ui/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        ui.post("/ui/login", data={"csrf": csrf, "user": person, "password": password}).raise_for_status()
        page = ui.get("/ui/device", params={"user_code": user_code}).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = {"csrf": csrf, "user_code": user_code, "decision": "approve", "role": roles}
        lifetime = re.search(r'<option value="([^"]+)"[^>]*selected', page)
        if lifetime:
            form["lifetime"] = lifetime.group(1)
        ui.post("/ui/device", data=form).raise_for_status()


def test_device_flow_gives_a_token_a_person_approved(url, site):
    scope = "project:p GET_JobStatus"
    auth = hpcsera.start_device_flow(url, "pytest", scope)
    assert auth.user_code and auth.verification_uri.endswith("/ui/device")
    approve_in_the_web_ui(url, auth.user_code, ["GET_JobStatus"])
    token = hpcsera.poll_device_token(url, auth, "pytest", sleep=lambda s: None)
    with hpcsera.Client(url, token) as c:
        me = c.whoami()
        assert me["roles"] == ["GET_JobStatus"] and me["user"] == os.environ["HPCSERA_TEST_PERSON"]
        with pytest.raises(hpcsera.Forbidden):
            c.submit(site, "noop")
    with pytest.raises(hpcsera.DeviceFlowError) as e:
        hpcsera.poll_device_token(url, auth, "pytest", sleep=lambda s: None)
    assert e.value.error == "invalid_grant"
    with pytest.raises(hpcsera.DeviceFlowError) as e:
        hpcsera.start_device_flow(url, "pytest", "project:p NOT_A_ROLE")
    assert e.value.error == "invalid_scope"


def test_the_readme_example_runs(url, token):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    env = {**os.environ, "HPCSERA_URL": url, "HPCSERA_TOKEN": token}
    out = subprocess.run(["python3", "-c", example], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Hello, you, from" in out.stdout
