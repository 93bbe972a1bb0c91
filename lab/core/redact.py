"""Keep secrets out of everything the lab stores or prints.

:func:`redact` masks what looks like a credential in free text (provider keys, bearer and basic
credentials, ``api_key=``/``key=``/``token=`` parameters, passwords in URLs) and every secret this
process was given (configured keys, keys a proxied caller sent, passwords in a base URL, in every form
they travel in: as is, ``user:password``, base64); :func:`scrub` does the same through any JSON value
(a manifest); :func:`clean_url` drops a URL's user, password, query and fragment; :func:`guard_logging`
passes every log record through :func:`redact`. Records, manifests, logs and messages pass through them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MASK = "[redacted]"
URL_MASK = "redacted"
"""What replaces a URL's user and password: a user name, so the URL still parses."""
MAX_REMEMBERED = 10_000
"""Secrets remembered at most (a proxy sees a key per caller): the oldest are forgotten past it."""

_PATTERNS = [  # (what looks like a credential, what replaces it: the part before the secret is kept)
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,}"), MASK),  # Anthropic and OpenAI key shapes
    (re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9._~+/\-]{4,}=*"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b((?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]{4,}"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b((?:token|secret|password|passwd|access[-_]?token|auth)[\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"'&,;]{4,}"), rf"\1{MASK}"),
    (re.compile(r"(?i)([?&](?:key|sig|signature|code)=)[^\s\"'&#]{4,}"), rf"\1{MASK}"),  # URL query credentials
    (re.compile(r"//[^/@\s:]+:[^/@\s]+@"), f"//{URL_MASK}@"),  # user:password@ in a URL
    (re.compile(r"//(?!redacted@)[^/@\s:]{8,}@"), f"//{URL_MASK}@"),  # a token as the URL's user
]
_known: dict[str, None] = {}


def remember(secret: str | None) -> None:
    """Mask this exact value wherever it appears from now on, also as ``base64`` (a Basic credential)."""
    if not secret or len(secret) < 6:
        return
    for form in (secret, base64.b64encode(secret.encode()).decode().rstrip("=")):
        _known.pop(form, None)
        _known[form] = None
    while len(_known) > MAX_REMEMBERED:
        _known.pop(next(iter(_known)))


SECRET_VARIABLES = re.compile(r"(?i)(?:^|_)(?:API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD)$")
"""Environment variables whose values are secrets, wherever they may be echoed."""


def remember_environment(environ: Mapping[str, str] | None = None) -> None:
    """Remember the value of every secret-named environment variable (``ANTHROPIC_API_KEY``, ``*_TOKEN`` ...)
    and the credentials of every ``*_BASE_URL``: an upstream or an imported file that echoes one is masked."""
    import os

    for name, value in (os.environ if environ is None else environ).items():
        if SECRET_VARIABLES.search(name):
            remember(value)
        elif name.upper().endswith(("_BASE_URL", "_URL")):
            remember_url(value)


def remember_url(url: str | None) -> None:
    """Remember the credentials a URL carries: its user and password (and ``user:password``, as a Basic
    credential is built from it) and the values of its query parameters."""
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if password:
        remember(password)
        remember(f"{user}:{password}")
    elif len(user) >= 8:
        remember(user)
    for _, value in parse_qsl(parts.query):
        remember(value)


def remember_header(name: str, value: str | None) -> None:
    """Remember a credential header's secret (``x-api-key``, ``authorization``: Bearer or Basic)."""
    if not value or name.lower() not in ("x-api-key", "authorization", "proxy-authorization", "api-key"):
        return
    scheme, _, token = value.strip().partition(" ")
    if not token:
        remember(value.strip())
        return
    remember(token.strip())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return
        remember(decoded)
        remember(decoded.partition(":")[2])


def redact(text: str | None) -> str | None:
    """``text`` with every remembered secret and anything shaped like a credential replaced by ``[redacted]``."""
    if not text:
        return text
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub(value: Any) -> Any:
    """A JSON value (a manifest, a record) with :func:`redact` applied to every string in it, keys included."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {scrub(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


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


_guarded = False


def guard_logging() -> None:
    """Pass every log record of this process (a web server's error log included) through :func:`redact`:
    its message, its arguments and its traceback text, when it is made."""
    global _guarded
    if _guarded:
        return
    _guarded = True
    make = logging.getLogRecordFactory()

    def scrubbed(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if sys.meta_path is None:  # the interpreter is shutting down: nothing can be imported, the record can go
            return record
        try:
            record.msg, record.args = redact(record.getMessage()), ()
        except Exception:  # a record whose message cannot be formatted: say so, never its arguments
            record.msg, record.args = f"(unformattable log message from {record.name})", ()
        if record.exc_info:
            kind = record.exc_info[0]
            if kind is not None and kind.__module__.endswith("http_exceptions"):
                # a malformed request: its raw line may hold anything (a key in a broken header); say what it was
                record.exc_text = f"{kind.__name__}: the request was malformed and refused"
            else:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(scrubbed)
