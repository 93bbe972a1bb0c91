"""What an endpoint URL is: the lab's own emulator, a server on this machine, or a provider.

The store keys a call by :func:`identity`: ``"emulator"`` for an emulator running in this
process (whatever free port it got, so a run collected against it replays and resumes on the
next port), and for every other endpoint its URL with scheme, host, port and path (so a
recorded emulator answer never replays for a real local vLLM or Ollama server).
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from lab.core.errors import BadInput
from lab.core.redact import clean_url, remember_url

EMULATOR = "emulator"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_emulators: set[str] = set()
_lock = threading.Lock()


def http_url(url: str) -> str:
    """``url`` if it is an http:// or https:// URL with a host (its credentials then masked wherever they would
    show), without a trailing slash; ``ValueError`` saying what is allowed."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except (ValueError, TypeError):  # a port that is not a number, say
        valid = False
    if not valid or any(c.isspace() for c in url):
        raise BadInput(f"{clean_url(str(url))!r} is not an http:// or https:// URL with a host "
                         "(e.g. http://localhost:8000/v1)")
    remember_url(url)
    return url.rstrip("/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def register_emulator(base_url: str) -> None:
    """Note that an emulator of this process serves ``base_url`` (it calls this when it starts)."""
    with _lock:
        _emulators.add(_origin(base_url))


def unregister_emulator(base_url: str) -> None:
    with _lock:
        _emulators.discard(_origin(base_url))


def is_emulator(endpoint: str) -> bool:
    """True for the ``"emulator"`` identity and for a URL an in-process emulator serves."""
    return endpoint == EMULATOR or _origin(endpoint) in _emulators


def identity(endpoint: str) -> str:
    """The endpoint as the store keys it: ``"emulator"``, or the URL without credentials or query."""
    return EMULATOR if is_emulator(endpoint) else clean_url(endpoint)


def is_local(endpoint: str) -> bool:
    """True for a server on this machine (the emulator, a local vLLM): calling it costs nothing."""
    return endpoint == EMULATOR or urlsplit(endpoint).hostname in LOOPBACK_HOSTS


def sdk_base_url(server_url: str, api: str) -> str:
    """The SDK ``base_url`` for ``anthropic``, ``openai`` or ``openai-compatible`` at a server that
    speaks both on the providers' paths (the emulator, the proxy): what ``ANTHROPIC_BASE_URL`` and
    ``OPENAI_BASE_URL`` are set to."""
    if api == "anthropic":
        return server_url
    if api in ("openai", "openai-compatible"):
        return f"{server_url}/v1"
    raise BadInput(f"unknown api {api!r}")
