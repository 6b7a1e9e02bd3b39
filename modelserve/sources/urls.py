"""``http://`` and ``https://`` sources, fetched with the standard library, limited in size and time.

:func:`probe` makes one GET request and says what the URL serves: an image (its bytes, read whole,
at most ``max_bytes``), a live MJPEG stream (``multipart/x-mixed-replace``: the connection is
closed and the stream is read by :mod:`.video`), or a video (a ``video/*`` type: read by
:mod:`.video` from the URL, never downloaded whole). Every failure is a :class:`SourceError`
naming the URL: an HTTP status (404, ...), a refused or failed connection, a body larger than
``max_bytes`` (announced or counted), or ``timeout`` seconds passed: each wait for data is at most
``timeout``, and the fetch stops at the first receive after ``timeout`` seconds in all (a server
dripping bytes cannot keep it going). Redirects are followed (at most 10, as urllib does); other schemes are refused.
"""

from __future__ import annotations

import socket
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .._errors import SourceError

__all__ = ["Fetched", "MAX_BYTES", "TIMEOUT", "is_http", "probe"]

#: Default limits of one fetch: 64 MiB, 10 seconds in all.
MAX_BYTES = 64 * 2**20
TIMEOUT = 10.0
_CHUNK = 1 << 16


class Fetched(NamedTuple):
    """What a URL serves: ``kind`` is ``"image"`` (``data`` holds its bytes), ``"stream"`` or ``"video"``."""

    kind: str
    data: bytes = b""


def is_http(source: str) -> bool:
    return source[:8].lower().startswith(("http://", "https://"))


def _read(response: Any, url: str, max_bytes: int, deadline: float) -> bytes:
    length = response.headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise SourceError(f"{url} is {int(length)} bytes, more than the limit of {max_bytes}")
    parts: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise SourceError(f"fetching {url} took longer than its time limit")
        chunk = response.read1(_CHUNK)  # one receive: a server dripping bytes cannot outlast the deadline
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > max_bytes:
            raise SourceError(f"{url} sent more than the limit of {max_bytes} bytes")
        parts.append(chunk)


def probe(url: str, *, max_bytes: int = MAX_BYTES, timeout: float = TIMEOUT, shown: str | None = None) -> Fetched:
    """GET ``url`` and return what it serves (see the module docstring). Errors name ``shown``
    (the URL with its password masked), else ``url``."""
    import urllib.error
    import urllib.request  # here, not at import: most users never fetch a URL

    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise SourceError(f"only http:// and https:// URLs are fetched, got {shown or url!r}")
    name = shown or url
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "modelserve", "Accept": "image/*, */*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            ctype = (response.headers.get_content_type() or "").lower()
            if ctype == "multipart/x-mixed-replace":
                return Fetched("stream")
            if ctype.startswith("video/"):
                return Fetched("video")
            data = _read(response, name, max_bytes, deadline)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{name} answered HTTP {exc.code} {exc.reason}") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise SourceError(f"fetching {name} timed out after {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise SourceError(f"fetching {name} timed out after {timeout:g} s") from exc
        raise SourceError(f"cannot fetch {name}: {reason}") from exc
    except (OSError, ValueError) as exc:  # a connection reset mid-body, a malformed URL or header
        raise SourceError(f"cannot fetch {name}: {type(exc).__name__}: {exc}") from exc
    if not data:
        raise SourceError(f"{name} sent an empty body")
    return Fetched("image", data)
