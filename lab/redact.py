"""Keep secrets out of everything the lab stores or prints.

:func:`redact` masks what looks like a credential in free text (provider keys,
bearer tokens, ``api_key=`` parameters, passwords in URLs) and every key value
configured in this process; :func:`clean_url` drops a URL's user, password,
query and fragment. Records, manifests, logs and messages pass through them.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "[redacted]"

_PATTERNS = [  # (what looks like a credential, what replaces it: the part before the secret is kept)
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,}"), MASK),  # Anthropic and OpenAI key shapes
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b((?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]{4,}"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b((?:token|secret|password|passwd)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]{4,}"), rf"\1{MASK}"),
    (re.compile(r"//[^/@\s:]+:[^/@\s]+@"), f"//{MASK}@"),  # user:password@ in a URL
]
_known: set[str] = set()


def remember(secret: str | None) -> None:
    """Mask this exact value wherever it appears from now on (called for every configured key)."""
    if secret and len(secret) >= 8:
        _known.add(secret)


def redact(text: str | None) -> str | None:
    """``text`` with every known key and anything shaped like a credential replaced by ``[redacted]``."""
    if not text:
        return text
    for secret in _known:
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def clean_url(url: str) -> str:
    """The URL without user, password, query or fragment, and without a trailing slash."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url) or ""
    if not parts.scheme or not parts.hostname:
        return redact(url.rstrip("/")) or ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
