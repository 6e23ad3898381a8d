#!/usr/bin/env python3
"""A data lake's ingest of finished hpcsera jobs: raw data, metadata and manifests together.

For every ended job of the token's project that has signed provenance, the job's crate
(GET /api/v1/job/{id}/provenance.zip) is downloaded, checked with `hpcsera provenance verify
--crate` against the agent's public key (a crate that does not verify is refused), and
ingested into a plain directory:

    LAKE/objects/ab/abcdef…          every result file, stored once by its SHA-256
    LAKE/jobs/<job id>/ro-crate-metadata.json       the signed manifest (exact bytes)
    LAKE/jobs/<job id>/ro-crate-metadata.json.sig   its detached signature
    LAKE/index.json                  SHA-256 -> the jobs (role, name) that made or used it

Ingesting again adds only jobs not in the lake yet. The index answers what the server's
search (GET /api/v1/provenance?sha256=…) answers, from the lake alone.

Needs HPCSERA_URL and HPCSERA_TOKEN in the environment; the `hpcsera` binary on PATH (or
HPCSERA_BIN). Python's standard library only.

Usage: ingest.py LAKE_DIR AGENT_KEY      (AGENT_KEY: ed25519:… or a file holding it)
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

API = os.environ["HPCSERA_URL"].rstrip("/") + "/api/v1"
TOKEN = os.environ["HPCSERA_TOKEN"]
HPCSERA = os.environ.get("HPCSERA_BIN", "hpcsera")


def get(path):
    req = urllib.request.Request(API + path, headers={"Authorization": "Bearer " + TOKEN})
    return urllib.request.urlopen(req, timeout=60)


def ended_jobs():
    """Every ended job of the project, following the listing's cursor."""
    cursor = None
    while True:
        q = {"status": "completed,failed,cancelled", "limit": "100"}
        if cursor:
            q["cursor"] = cursor
        page = json.load(get("/job/findJobsByStatus?" + urllib.parse.urlencode(q)))
        yield from page["jobs"]
        cursor = page.get("nextCursor")
        if not cursor:
            return


def files_named(manifest):
    """(role, @id, sha256) of every File the job's action names (what the server indexes)."""
    graph = {e["@id"]: e for e in manifest["@graph"]}
    job_id = graph["./"]["identifier"]
    action = graph["urn:uuid:" + job_id]

    def refs(prop):
        v = action.get(prop, [])
        return [r["@id"] for r in (v if isinstance(v, list) else [v])]

    for role, prop in (("result", "result"), ("input", "object")):
        for ref in refs(prop):
            e = graph.get(ref, {})
            if e.get("@type") != "File":
                continue
            if role == "input" and ref.startswith("#code-"):
                role_here = "code"
            else:
                role_here = role
            yield role_here, ref, e["sha256"]


def unpack(zip_path, into):
    """The crate's manifest, signature and results/ files; nothing outside `into`."""
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            name = info.filename
            safe = not name.startswith("/") and ".." not in name.split("/")
            wanted = name in ("ro-crate-metadata.json", "ro-crate-metadata.json.sig") or name.startswith("results/")
            if safe and wanted and not info.is_dir():
                z.extract(info, into)


def ingest_job(lake, job, agent_key, work):
    """Downloads, verifies and stores one job's crate; False when it has none or is refused."""
    job_id = job["id"]
    zip_path = work / (job_id + ".zip")
    try:
        with get(f"/job/{job_id}/provenance.zip") as r, open(zip_path, "wb") as f:
            shutil.copyfileobj(r, f)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False  # ended without signed provenance (e.g. cancelled before a claim)
        raise
    crate = work / job_id
    unpack(zip_path, crate)
    check = subprocess.run([HPCSERA, "provenance", "verify", job_id, "--agent-key", agent_key,
                            "--crate", str(crate)], capture_output=True, text=True)
    if check.returncode != 0:
        print(f"refused {job_id}: {check.stderr.strip()}", file=sys.stderr)
        return False
    manifest = json.loads((crate / "ro-crate-metadata.json").read_bytes())
    for role, ref, sha in files_named(manifest):
        if role != "result":
            continue
        obj = lake / "objects" / sha[:2] / sha
        if not obj.exists():
            obj.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(crate / ref, obj)
    dest = lake / "jobs" / job_id
    dest.mkdir(parents=True)
    for name in ("ro-crate-metadata.json", "ro-crate-metadata.json.sig"):
        shutil.copyfile(crate / name, dest / name)
    return True


def build_index(lake):
    """index.json from the manifests in the lake, written atomically."""
    index = {}
    for manifest_path in sorted((lake / "jobs").glob("*/ro-crate-metadata.json")):
        job_id = manifest_path.parent.name
        for role, ref, sha in files_named(json.loads(manifest_path.read_bytes())):
            index.setdefault(sha, []).append({"job": job_id, "role": role, "name": ref})
    tmp = lake / "index.json.tmp"
    tmp.write_text(json.dumps({"sha256": index}, indent=1, sort_keys=True))
    tmp.replace(lake / "index.json")
    return index


def main():
    lake, agent_key = Path(sys.argv[1]), sys.argv[2]
    (lake / "jobs").mkdir(parents=True, exist_ok=True)
    added = 0
    with tempfile.TemporaryDirectory() as work:
        for job in ended_jobs():
            if not (lake / "jobs" / job["id"]).exists() and ingest_job(lake, job, agent_key, Path(work)):
                added += 1
    index = build_index(lake)
    print(json.dumps({"ingested": added, "digests": len(index)}))


if __name__ == "__main__":
    main()
