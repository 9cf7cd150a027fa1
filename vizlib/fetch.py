"""Network access with time limits: the only module that opens URLs.

Every call fails fast with :class:`FetchError` (one clear line) when the network is
unreachable, slow, or ``VIZLIB_OFFLINE`` is set; nothing here ever hangs.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from . import config

DEFAULT_TIMEOUT = 10.0
_USER_AGENT = "vizlib (Seeing Inside ConvNets course)"


class FetchError(OSError):
    """A URL could not be fetched (offline, timed out, HTTP error, wrong content)."""


def _open(url: str, timeout: float):
    if config.offline():
        raise FetchError(f"not fetching {url}: VIZLIB_OFFLINE is set")
    if not url.lower().startswith(("http://", "https://")):
        raise FetchError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()  # release the socket of the error response
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        host = urllib.parse.urlsplit(url).netloc
        raise FetchError(f"cannot reach {host} ({reason})") from None


def fetch_bytes(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = 64 << 20) -> tuple[bytes, str]:
    """Download ``url`` into memory.

    Returns ``(body, content_type)``. Raises :class:`FetchError` on any failure,
    including a body larger than ``max_bytes``.
    """
    with _open(url, timeout) as response:
        content_type = response.headers.get("Content-Type", "") or ""
        try:
            body = response.read(max_bytes + 1)
        except OSError as e:  # socket.timeout is an OSError
            raise FetchError(f"{url}: read failed ({e})") from None
    if len(body) > max_bytes:
        raise FetchError(f"{url}: larger than {max_bytes} bytes")
    return body, content_type


def download(url: str, path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT,
             sha256_prefix: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` atomically (a temporary file, then a rename).

    If ``sha256_prefix`` is given the file's SHA-256 must start with it, else the
    file is discarded and :class:`FetchError` raised. A progress bar appears once the
    connection is open (so a failed connection prints nothing but the error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with _open(url, timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {path.name}",
                   disable=not progress)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except OSError as e:
                        raise FetchError(f"{url}: read failed ({e})") from None
                    if not chunk:
                        break
                    digest.update(chunk)
                    f.write(chunk)
                    bar.update(len(chunk))
            if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix):
                raise FetchError(f"{url}: checksum mismatch (expected sha256 {sha256_prefix}…)")
            os.replace(tmp, path)
        finally:
            bar.close()
            if os.path.exists(tmp):
                os.remove(tmp)
    return path
