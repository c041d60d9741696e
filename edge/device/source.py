"""Where a bundle comes from: a local file, or an HTTP(S) URL read with Range requests.

An HTTP source is a seekable stream: every seek starts a new ranged GET, and a
connection that drops is reopened at the current position (a few retries with
backoff), so an install resumes from its checkpoint without downloading what
it already wrote.
"""

from __future__ import annotations

import io
import re
import time
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # imported by HttpStream() at run time
    import http.client
    import urllib.error
    import urllib.request

from edge.errors import InputFileError, UsageError

from .errors import DownloadError

RETRIES = 5


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def open_source(source: str) -> BinaryIO:
    if is_url(source):
        return HttpStream(source)
    try:
        return open(source, "rb")
    except OSError as exc:  # a missing or unreadable bundle file is an input error (exit 3), as everywhere
        raise InputFileError(f"{source}: {exc.strerror}") from None


def check_url(url: str) -> None:
    """Refuse, as a usage error, an http(s) URL that no retry could download: it would otherwise be
    retried with backoff and reported as a download fault (exit 14, "try again later")."""
    from urllib.parse import urlsplit

    def bad(why: str) -> UsageError:
        return UsageError(f"{url}: not a URL Edge can download: {why}")

    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise bad("it holds a space or a control character (write them %-encoded)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", a port that is not a number
        raise bad(str(exc).lower()) from None
    if parts.scheme not in ("http", "https"):
        raise bad("only http and https are supported")
    if not parts.hostname:
        raise bad("no host")
    if parts.username is not None or parts.password is not None:
        raise bad("user names and passwords in the URL are not supported")
    if port == 0:
        raise bad("port 0")


class HttpStream(io.RawIOBase):
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        global http, urllib
        import http.client  # here, not at the top: a local file or delta never loads the HTTP client (~20 ms)
        import urllib.error
        import urllib.request

        check_url(url)
        self.url = url
        self.name = url
        self.timeout = timeout
        self._pos = 0
        self._resp = None
        self._size: int | None = None
        self._got = 0  # bytes the open connection has delivered

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            new = offset
        elif whence == io.SEEK_CUR:
            new = self._pos + offset
        else:
            new = self.size() + offset
        if new != self._pos:
            self._drop()
            self._pos = new
        return self._pos

    @property
    def known_size(self) -> int | None:
        """The resource's size if an answer has told it (no request of its own, unlike size())."""
        return self._size

    def size(self) -> int:
        if self._size is None:
            req = urllib.request.Request(self.url, method="HEAD")
            with self._retry(lambda: urllib.request.urlopen(req, timeout=self.timeout)) as resp:
                length = resp.headers.get("Content-Length")
            if length is None:
                raise DownloadError(f"{self.url}: the server does not say how big the bundle is")
            self._size = int(length)
        return self._size

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def _open(self) -> None:
        req = urllib.request.Request(self.url, headers={"Range": f"bytes={self._pos}-"})
        resp = self._retry(lambda: urllib.request.urlopen(req, timeout=self.timeout))
        if self._pos and resp.status != 206:
            resp.close()
            raise DownloadError(f"{self.url}: the server does not support Range requests (HTTP {resp.status} to a "
                              f"ranged GET), which streaming and resuming need")
        sent = resp.headers.get("Content-Range", "").strip()
        start, total = _content_range(sent)
        if resp.status == 206 and start != self._pos:
            resp.close()  # bytes from elsewhere would look like a damaged bundle: it is the server's fault
            raise DownloadError(f"{self.url}: asked for the bytes from {self._pos}, the server sent "
                                f"{_quoted(sent) if sent else 'no Content-Range'}")
        self._resp = resp
        if self._size is None:
            length = resp.headers.get("Content-Length")
            if total is None and resp.status == 200 and length is not None and length.isdigit():
                total = int(length)  # the whole resource
            self._size = total

    def _retry(self, call):  # type: ignore[no-untyped-def]
        delay = 0.5
        for attempt in range(RETRIES + 1):
            try:
                return call()
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and self._pos > 0:  # range not satisfiable: reading at or past the end
                    raise _AtEnd() from None
                if exc.code < 500 or attempt == RETRIES:
                    raise DownloadError(f"{self.url}: {_http_error(exc)}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                if attempt == RETRIES:
                    raise DownloadError(f"{self.url}: cannot download ({_why(exc)})") from None
            time.sleep(delay)
            delay = min(delay * 2, 8)
        raise AssertionError("unreachable")

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        attempt = 0
        while True:
            try:
                if self._resp is None:
                    self._open()
                    self._got = 0
                assert self._resp is not None
                n = self._resp.readinto(b)
                if n == 0 and len(b) and self._size is not None and self._pos < self._size:
                    # http.client reports a body cut short of its Content-Length (a dropped connection, a
                    # server that caps each answer) as the end of the data: it is an interruption
                    raise ConnectionError(f"the server's answer ended at byte {self._pos} of {self._size}")
                self._pos += n
                self._got += n
                return n
            except _AtEnd:
                return 0
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                progressed = self._got > 0
                self._drop()  # reconnect at the current position
                if progressed:
                    attempt = 0  # this connection delivered data before it ended: reopen at once
                    continue
                if attempt == RETRIES:
                    raise DownloadError(f"{self.url}: download interrupted at byte {self._pos} ({_why(exc)})") from None
                time.sleep(min(0.5 * 2**attempt, 8))
                attempt += 1

    def close(self) -> None:
        self._drop()
        super().close()


class _AtEnd(Exception):
    pass


def _quoted(said: str, limit: int = 80) -> str:
    """A server's text (a reason phrase, a header, a status line) for a message: one line, at most
    ``limit`` characters; a server may send up to 64 KiB of anything there."""
    text = " ".join(said.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _http_error(exc: urllib.error.HTTPError) -> str:
    if 300 <= exc.code < 400 and str(exc.reason).startswith(urllib.request.HTTPRedirectHandler.inf_msg):
        return f"HTTP {exc.code}: too many redirects (or a redirect loop)"
    return f"HTTP {exc.code} {_quoted(str(exc.reason))}"


def _why(exc: BaseException) -> str:
    """Why a request or a read failed, in a few words of one line."""
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.BadStatusLine):
        return f"the answer is not HTTP: it starts {_quoted(str(exc), 40)!r}"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer broke off, or its chunked encoding is damaged"
    if isinstance(exc, urllib.error.URLError):
        return _quoted(str(exc.reason))
    return _quoted(str(exc))


def _content_range(sent: str) -> tuple[int | None, int | None]:
    """(first byte, whole size) from a Content-Range value such as "bytes 100-199/2000"; None for what it
    does not say (the size may be "*")."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", sent)
    if m is None:
        return None, None
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))
