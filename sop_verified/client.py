"""The Python client of a remote SOP: the bridge plane over mutual TLS, the read plane over HTTP.

:class:`Client` (blocking) and :class:`AsyncClient` (asyncio) ask a running
``sop serve`` for decisions (docs/HTTP_API.md) and give back SOP's own
:class:`~sop_verified.core.request.Decision`, rebuilt from its JSON form
(:mod:`sop_verified.client_json`). ``submit`` is there too, so code written
against the in-process :class:`~sop_verified.nexus.sop.SOP` runs against a
client.

Retries. A call is sent again after a connection error, a 429 or a 503
(waiting what ``Retry-After`` says, capped at ``max_wait``) and a 409
``idempotency_key_in_flight`` (the first try is still being decided), at most
``retries`` times. Every try of one call carries the same ``Idempotency-Key``
(made with :func:`secrets.token_urlsafe` unless the caller gives one), so the
server answers a retry with the first decision and never decides twice. The
AuthZEN endpoints do not replay keys: an evaluation is sent again only when it
cannot have been decided (the connection was never made, or 429 or 503).

Errors. A DENY is a decision, not an error. Every other answer that is not a
success raises :class:`~sop_verified.errors.RemoteError` with the problem's
``status``, ``code``, ``stage``, ``detail`` and, when the server logged one,
its ``decision``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from sop_verified.client_calls import Call, Calls, Requestish, read_plane, submitted
from sop_verified.core.request import Decision
from sop_verified.errors import RemoteError
from sop_verified.server.certs import client_ssl_context

__all__ = ["AsyncClient", "Client", "RemoteError"]

_T = TypeVar("_T")


class Client(Calls):
    """A blocking client of a remote SOP (a context manager).

    Args:
        bridge_url: the bridge plane, ``https://HOST:PORT``.
        cert: this client's certificate (``NAME.pem`` from ``sop certs issue NAME``).
        key: its key (``NAME.key``).
        ca: the SOP's certificate authority (``ca.pem``).
        read_url: the public read plane, ``http://HOST:PORT`` (receipts, readiness).
        timeout: seconds for each try of a call.
        retries: how many times a call may be sent again (see the module).
        max_wait: the longest wait between tries, whatever ``Retry-After`` says.
        transport: an httpx transport for the bridge plane (it then owns TLS).

    Raises:
        ConfigError: a certificate file cannot be loaded.
    """

    def __init__(
        self,
        bridge_url: str,
        *,
        cert: Path | str,
        key: Path | str,
        ca: Path | str,
        read_url: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        max_wait: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(retries=retries, max_wait=max_wait)
        tls = client_ssl_context(Path(cert), Path(key), Path(ca))
        self._bridge = httpx.Client(
            base_url=bridge_url, verify=tls, timeout=timeout, transport=transport
        )
        self._read = None if read_url is None else httpx.Client(base_url=read_url, timeout=timeout)

    def _run(self, call: Call[_T]) -> _T:
        http = self._bridge if call.bridge else read_plane(self._read)
        attempt = 0
        while True:
            try:
                response = http.request(
                    call.method, call.path, content=call.body, headers=call.headers
                )
            except httpx.TransportError as exc:
                wait = self._wait_after_error(call, exc, attempt)
            else:
                after = self._wait_after_answer(call, response, attempt)
                if after is None:
                    return self._result(call, response)
                wait = after
            attempt += 1
            time.sleep(wait)

    def decide(self, request: Requestish, *, idempotency_key: str | None = None) -> Decision:
        """Decide one request remotely (``POST /v1/decide``).

        Args:
            request: the request, in SOP's schema.
            idempotency_key: the key every try carries; one is made when None.

        Returns:
            SOP's decision: ALLOW or DENY, logged, with its receipt.

        Raises:
            RemoteError: the server answered a problem (a malformed request: ``bad_request``,
                with its logged DENY as ``decision``), or could not be reached.
            InputError: the answer is not a decision.
        """
        return self._run(self._decide(request, idempotency_key))

    def submit(self, request: Requestish, *, idempotency_key: str | None = None) -> Decision:
        """:meth:`decide`, answered like :meth:`SOP.submit`: a problem's logged DENY is returned.

        Raises:
            RemoteError: the problem carries no logged decision, or no answer came.
        """
        try:
            return self.decide(request, idempotency_key=idempotency_key)
        except RemoteError as exc:
            return submitted(exc)

    def decide_batch(
        self, requests: Sequence[Requestish], *, idempotency_key: str | None = None
    ) -> list[Decision]:
        """Decide up to 64 requests in one call (``POST /v1/decide/batch``), in order.

        Raises:
            RemoteError: the server answered a problem, or could not be reached.
        """
        return self._run(self._batch(requests, idempotency_key))

    def evaluate(
        self,
        subject: str | dict[str, Any],
        action: str | dict[str, Any],
        resource: str | dict[str, Any],
        context: dict[str, Any] | None = None,
        *,
        capability: str | None = None,
    ) -> tuple[bool, Decision]:
        """One AuthZEN evaluation (``POST /access/v1/evaluation``).

        Args:
            subject: the principal's id, or an AuthZEN subject object.
            action: the action's name, or an AuthZEN action object.
            resource: the resource path, or an AuthZEN resource object.
            context: SOP's request context (and ``request_id``).
            capability: the capability token the subject holds.

        Returns:
            Whether it is allowed, and SOP's decision.

        Raises:
            RemoteError: the server answered a problem, or could not be reached.
        """
        return self._run(self._evaluate(subject, action, resource, context, capability))

    def receipt(self, index: int) -> str:
        """The receipt of log entry ``index`` (C2SP tlog-proof text) from the read plane.

        Raises:
            RemoteError: no such entry (``not_in_log``), or the read plane could not be reached.
        """
        return self._run(self._receipt(index))

    def ready(self) -> dict[str, Any]:
        """The read plane's readiness answer (``ready``, ``state``, ``detail``, ``warnings``)."""
        return self._run(self._ready())

    def close(self) -> None:
        """Close the connections."""
        self._bridge.close()
        if self._read is not None:
            self._read.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(Calls):
    """:class:`Client` for asyncio: the same arguments, the same calls, awaited."""

    def __init__(
        self,
        bridge_url: str,
        *,
        cert: Path | str,
        key: Path | str,
        ca: Path | str,
        read_url: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        max_wait: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(retries=retries, max_wait=max_wait)
        tls = client_ssl_context(Path(cert), Path(key), Path(ca))
        self._bridge = httpx.AsyncClient(
            base_url=bridge_url, verify=tls, timeout=timeout, transport=transport
        )
        self._read = (
            None if read_url is None else httpx.AsyncClient(base_url=read_url, timeout=timeout)
        )

    async def _run(self, call: Call[_T]) -> _T:
        http = self._bridge if call.bridge else read_plane(self._read)
        attempt = 0
        while True:
            try:
                response = await http.request(
                    call.method, call.path, content=call.body, headers=call.headers
                )
            except httpx.TransportError as exc:
                wait = self._wait_after_error(call, exc, attempt)
            else:
                after = self._wait_after_answer(call, response, attempt)
                if after is None:
                    return self._result(call, response)
                wait = after
            attempt += 1
            await asyncio.sleep(wait)

    async def decide(self, request: Requestish, *, idempotency_key: str | None = None) -> Decision:
        """See :meth:`Client.decide`."""
        return await self._run(self._decide(request, idempotency_key))

    async def submit(self, request: Requestish, *, idempotency_key: str | None = None) -> Decision:
        """See :meth:`Client.submit`."""
        try:
            return await self.decide(request, idempotency_key=idempotency_key)
        except RemoteError as exc:
            return submitted(exc)

    async def decide_batch(
        self, requests: Sequence[Requestish], *, idempotency_key: str | None = None
    ) -> list[Decision]:
        """See :meth:`Client.decide_batch`."""
        return await self._run(self._batch(requests, idempotency_key))

    async def evaluate(
        self,
        subject: str | dict[str, Any],
        action: str | dict[str, Any],
        resource: str | dict[str, Any],
        context: dict[str, Any] | None = None,
        *,
        capability: str | None = None,
    ) -> tuple[bool, Decision]:
        """See :meth:`Client.evaluate`."""
        return await self._run(self._evaluate(subject, action, resource, context, capability))

    async def receipt(self, index: int) -> str:
        """See :meth:`Client.receipt`."""
        return await self._run(self._receipt(index))

    async def ready(self) -> dict[str, Any]:
        """See :meth:`Client.ready`."""
        return await self._run(self._ready())

    async def aclose(self) -> None:
        """Close the connections."""
        await self._bridge.aclose()
        if self._read is not None:
            await self._read.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
