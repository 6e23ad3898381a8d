"""hpcsera: the Python SDK of the HPC Service API.

>>> from hpcsera import Client
>>> with Client("http://127.0.0.1:8080", token) as c:           # doctest: +SKIP
...     job = c.submit("local", "hello", {"who": "you"})
...     job = c.wait(job["id"])
...     print(b"".join(c.follow_output(job["id"])).decode())

:class:`Client` (sync) and :class:`AsyncClient` (asyncio) have the same methods; errors are
:class:`ApiError` subclasses carrying the server's ``code``, ``message``, ``fields`` and
``request_id``.
"""

from ._async import AsyncClient
from ._client import Client
from ._device import async_device_login, device_login, poll_device_token, start_device_flow
from ._errors import (
    ApiError,
    BadRequest,
    Conflict,
    DeviceFlowError,
    Forbidden,
    HpcseraError,
    Invalid,
    JobFailed,
    SweepFailed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    WaitTimeout,
)
from ._pack import bundle_id, pack_directory
from ._types import TERMINAL, DeviceAuthorization, OutputChunk, Provenance, Sweep

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ApiError",
    "BadRequest",
    "Conflict",
    "DeviceAuthorization",
    "DeviceFlowError",
    "Forbidden",
    "HpcseraError",
    "Invalid",
    "JobFailed",
    "SweepFailed",
    "NotFound",
    "OutputChunk",
    "PayloadTooLarge",
    "Provenance",
    "Sweep",
    "RateLimited",
    "ServerError",
    "TERMINAL",
    "Unauthorized",
    "WaitTimeout",
    "async_device_login",
    "bundle_id",
    "device_login",
    "pack_directory",
    "poll_device_token",
    "start_device_flow",
]
