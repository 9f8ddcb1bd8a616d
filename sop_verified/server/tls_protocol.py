"""uvicorn's HTTP protocol with the ASGI TLS extension: the client certificate reaches the app.

uvicorn verifies the client certificate during the handshake (the SSL context
requires one, from SOP's CA) but does not put it in the ASGI scope. This
protocol adds the ASGI TLS extension (``scope["extensions"]["tls"]``:
``client_cert_chain`` as PEM, ``client_cert_name``, ``client_cert_error``,
``tls_version``, ``cipher_suite``, ``server_cert``) from the connection's SSL
object, read once per connection (asyncio hands the protocol a connection
only after the handshake succeeded). ADR 0013 says why uvicorn and not granian.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["TLSHttpToolsProtocol"]

_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TLSHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that fills the ASGI TLS extension of each request's scope."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Read the peer certificate once, then go on as uvicorn does."""
        super().connection_made(transport)
        self._tls = _tls_extension(transport.get_extra_info("ssl_object"))

    def on_message_begin(self) -> None:
        """Start a request's scope, with the connection's TLS extension."""
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]


def _tls_extension(sslobj: ssl.SSLObject | None) -> dict[str, Any] | None:
    if sslobj is None:
        return None
    der = sslobj.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": None,
        "client_cert_error": None if chain else "no client certificate",
        "tls_version": _VERSIONS.get(sslobj.version() or ""),
        "cipher_suite": None,  # the extension wants the IANA number, which ssl does not give
    }
