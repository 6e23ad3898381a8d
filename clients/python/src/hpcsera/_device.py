"""The OAuth 2.0 Device Authorization Grant (RFC 8628) for headless programs: ask for a token
for a scope (``project:P [site:S] [lifetime:7d] ROLE…``), show the person the code and the
page (``/ui/device``), and poll until they approved or denied it there."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Dict, Union

import httpx

from ._errors import DeviceFlowError
from ._types import DeviceAuthorization

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"


def _authorization(r: httpx.Response) -> DeviceAuthorization:
    body = _body(r)
    if r.status_code != 200:
        raise DeviceFlowError(str(body.get("error", f"HTTP {r.status_code}")), str(body.get("error_description", "")))
    return DeviceAuthorization(
        device_code=body["device_code"],
        user_code=body["user_code"],
        verification_uri=body["verification_uri"],
        verification_uri_complete=body.get("verification_uri_complete"),
        expires_in=int(body["expires_in"]),
        interval=int(body.get("interval", 5)),
    )


def _body(r: httpx.Response) -> Dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def _show(auth: DeviceAuthorization) -> None:
    print(
        f"To approve, open {auth.verification_uri_complete or auth.verification_uri} "
        f"and enter the code {auth.user_code}"
    )


def _outcome(r: httpx.Response) -> Union[str, int, None]:
    """The token (str), a new wait in seconds for ``slow_down`` (int), or None to poll again."""
    body = _body(r)
    if r.status_code == 200 and body.get("access_token"):
        return str(body["access_token"])
    error = str(body.get("error", f"HTTP {r.status_code}"))
    if error == "authorization_pending":
        return None
    if error == "slow_down":
        return 5
    raise DeviceFlowError(error, str(body.get("error_description", "")))


def start_device_flow(url: str, client_id: str, scope: str, *, verify: Union[bool, str] = True) -> DeviceAuthorization:
    """Asks the server for a device code and a user code (RFC 8628 3.1)."""
    with httpx.Client(base_url=url.rstrip("/"), verify=verify) as http:
        r = http.post("/oauth/device_authorization", data={"client_id": client_id, "scope": scope})
    return _authorization(r)


def poll_device_token(
    url: str,
    auth: DeviceAuthorization,
    client_id: str,
    *,
    verify: Union[bool, str] = True,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Polls the token endpoint every ``interval`` seconds (5 more after each ``slow_down``)
    until the person decided; returns the token, or raises :class:`DeviceFlowError`
    (``access_denied``, ``expired_token``, …)."""
    interval = auth.interval
    deadline = time.monotonic() + auth.expires_in
    form = {"grant_type": GRANT_TYPE, "device_code": auth.device_code, "client_id": client_id}
    with httpx.Client(base_url=url.rstrip("/"), verify=verify) as http:
        while True:
            if time.monotonic() > deadline:
                raise DeviceFlowError("expired_token", "the device code expired before a decision")
            sleep(interval)
            outcome = _outcome(http.post("/oauth/token", data=form))
            if isinstance(outcome, str):
                return outcome
            if isinstance(outcome, int):
                interval += outcome


def device_login(
    url: str,
    client_id: str,
    scope: str,
    *,
    show: Callable[[DeviceAuthorization], None] = _show,
    verify: Union[bool, str] = True,
) -> str:
    """The whole device flow: request, ``show`` the code to the person, poll; the token."""
    auth = start_device_flow(url, client_id, scope, verify=verify)
    show(auth)
    return poll_device_token(url, auth, client_id, verify=verify)


async def async_device_login(
    url: str,
    client_id: str,
    scope: str,
    *,
    show: Callable[[DeviceAuthorization], None] = _show,
    verify: Union[bool, str] = True,
) -> str:
    """:func:`device_login`, asynchronously."""
    async with httpx.AsyncClient(base_url=url.rstrip("/"), verify=verify) as http:
        r = await http.post("/oauth/device_authorization", data={"client_id": client_id, "scope": scope})
        auth = _authorization(r)
        show(auth)
        interval, deadline = auth.interval, time.monotonic() + auth.expires_in
        form = {"grant_type": GRANT_TYPE, "device_code": auth.device_code, "client_id": client_id}
        while True:
            if time.monotonic() > deadline:
                raise DeviceFlowError("expired_token", "the device code expired before a decision")
            await asyncio.sleep(interval)
            outcome = _outcome(await http.post("/oauth/token", data=form))
            if isinstance(outcome, str):
                return outcome
            if isinstance(outcome, int):
                interval += outcome

