"""Where the crash test's server listens now (:mod:`serve_crash`): clients wait while it is down."""

from __future__ import annotations

import threading

__all__ = ["Endpoint"]


class Endpoint:
    """Where the bridge plane listens now; None while the server is down."""

    def __init__(self, url: str) -> None:
        self._cond = threading.Condition()
        self._url: str | None = url
        self._generation = 0
        self._closed = False

    def up(self, url: str) -> None:
        """A (re)started server listens at ``url``."""
        with self._cond:
            self._url, self._generation = url, self._generation + 1
            self._cond.notify_all()

    def down(self) -> None:
        """The server is about to be killed: clients wait for the next one."""
        with self._cond:
            self._url = None

    def close(self) -> None:
        """No server will come back: waiting clients give up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def generation(self) -> int:
        """How many times a server came up (after the first)."""
        with self._cond:
            return self._generation

    def wait(self) -> tuple[int, str] | None:
        """The current server's generation and URL, waiting while it is down (None: closed)."""
        with self._cond:
            while self._url is None and not self._closed:
                self._cond.wait()
            return None if self._url is None else (self._generation, self._url)
