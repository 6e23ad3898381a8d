#!/usr/bin/env python3
"""Checks an unpacked hpcsera provenance crate with the community's own tools.

Usage: provenance_check.py CRATE_DIR

1. roc-validator (PyPI `roc-validator`) validates the crate against the Process Run Crate
   0.5 profile, which includes RO-Crate 1.1: once at REQUIRED severity, once at RECOMMENDED,
   and once the metadata document alone (what `GET /job/{id}/provenance` serves).
2. `rocrate` (PyPI) reads the crate back.

Prints one JSON object: the issues of each validation and the entities rocrate read
(`@id` -> type). Exits non-zero only when a tool is missing or crashes; the caller (the Rust
end-to-end test) asserts on the issues, so a missing tool fails the test, never skips it.

The validator fetches the RO-Crate JSON-LD context from w3id.org, which this machine (and CI)
cannot reach. The context is a static, versioned document; the `rocrate` package ships the
RO-Crate context (the 1.x contexts map every term a manifest uses to the same IRIs), so the
validator's HTTP client is given that copy for the context URL and nothing else.
"""

import json
import sys
from pathlib import Path

import requests
import rocrate
from rocrate.rocrate import ROCrate
from rocrate_validator import models, services
from rocrate_validator.utils import http as validator_http

CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
PROFILE = "process-run-crate-0.5"


def offline_context():
    shipped = json.loads((Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_text())
    return json.dumps({"@context": shipped["@context"]}).encode()


def install_offline_context():
    body = offline_context()
    fallback = validator_http.HttpRequester.__getattr__

    def get(self, url, *args, **kwargs):
        if url.rstrip("/") != CONTEXT_URL:
            return fallback(self, "get")(url, *args, **kwargs)
        r = requests.Response()
        r.status_code = 200
        r._content = body
        r.url = url
        r.encoding = "utf-8"
        r.headers["Content-Type"] = "application/ld+json"
        return r

    validator_http.HttpRequester.get = get


def validate(crate_dir, severity, metadata_only=False):
    settings = models.ValidationSettings(
        rocrate_uri=Path(crate_dir).absolute(),
        profile_identifier=PROFILE,
        requirement_severity=severity,
        metadata_only=metadata_only,
    )
    result = services.validate(settings)
    issues = [f"{i.check.identifier}: {i.message}" for i in result.get_issues()]
    return {"passed": bool(result.passed()), "issues": issues}


def main():
    crate_dir = sys.argv[1]
    install_offline_context()
    out = {
        "required": validate(crate_dir, "REQUIRED"),
        "recommended": validate(crate_dir, "RECOMMENDED"),
        "metadata_only": validate(crate_dir, "RECOMMENDED", metadata_only=True),
    }
    crate = ROCrate(crate_dir)
    out["entities"] = {e.id: e.type for e in crate.get_entities()}
    out["root"] = crate.root_dataset.id
    print(json.dumps(out))


if __name__ == "__main__":
    main()
