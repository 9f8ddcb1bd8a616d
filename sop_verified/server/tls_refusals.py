"""Counting the bridge plane's refused TLS handshakes (the ``sop_tls_handshake_refused`` metric).

asyncio (and uvloop) drop a failed handshake silently: the application never
sees the connection. What every refusal does is send a fatal TLS alert
(``certificate_required`` without a certificate, ``unknown_ca`` for another
authority's, ``certificate_expired``, ``bad_certificate``), and OpenSSL's
message callback sees each alert the server writes. ``ssl.SSLContext`` exposes
that callback only as ``_msg_callback`` (CPython's debugging hook, present
since 3.8); when an interpreter lacks it, refusals are not counted and the
server says so at start rather than reporting zero as if it were a count.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

__all__ = ["count_refused_handshakes"]

_FATAL = 2
_ALERT = 21  # TLS record content type `alert` (RFC 8446 section 5.1)


def count_refused_handshakes(ctx: ssl.SSLContext, on_refused: Callable[[str], None]) -> bool:
    """Call ``on_refused(alert name)`` for every fatal alert the server sends.

    Returns:
        Whether the hook could be installed.
    """
    if not hasattr(ctx, "_msg_callback"):
        return False

    def seen(*message: Any) -> None:  # (conn, direction, version, content type, type, data)
        _conn, direction, _version, content_type, msg_type, data = message
        if direction != "write" or content_type != _ALERT:
            return
        if len(data) >= 2 and data[0] == _FATAL:
            on_refused(getattr(msg_type, "name", str(msg_type)).lower())

    ctx._msg_callback = seen
    return True
