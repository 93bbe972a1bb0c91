"""Which provider, model, endpoint and key a call uses.

Settings come from the environment, then from a git-ignored ``.env`` file in
the working folder (the environment wins). Keys stay in memory: they are never
part of a record, a repr or a message.

=====================  ======================================================
variable               meaning
=====================  ======================================================
``LLM_PROVIDER``       ``anthropic`` (default), ``openai`` or ``openai-compatible``
``LLM_MODEL``          model id for the ``LLM_PROVIDER`` provider (not for others)
``ANTHROPIC_API_KEY``  key for ``anthropic``; ``ANTHROPIC_BASE_URL`` overrides its
                       endpoint, ``ANTHROPIC_MODEL`` its model
``OPENAI_API_KEY``     key for ``openai``; ``OPENAI_BASE_URL`` overrides its
                       endpoint, ``OPENAI_MODEL`` its model
``OPENAI_COMPATIBLE_BASE_URL``  endpoint of any OpenAI-compatible server (vLLM,
                       Ollama, llama.cpp), e.g. ``http://localhost:8000/v1``;
                       ``OPENAI_COMPATIBLE_API_KEY`` and ``OPENAI_COMPATIBLE_MODEL`` optional
=====================  ======================================================

A model comes from ``model=``, then the provider's own ``*_MODEL`` variable, then
``LLM_MODEL`` when the provider is the one ``LLM_PROVIDER`` names (or the default provider
when it is unset), then :data:`DEFAULT_MODELS`: so ``LLM_MODEL=claude-sonnet-4-6`` never
sends a Claude model id to OpenAI.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from lab.core.errors import LabError
from lab.core.redact import clean_url, remember, remember_environment, remember_url

PROVIDERS: tuple[str, ...] = ("anthropic", "openai", "openai-compatible")
DEFAULT_PROVIDER = "anthropic"
DEFAULT_MODELS: dict[str, str | None] = {
    "anthropic": "claude-haiku-4-5",
    "openai": "gpt-5-mini",
    "openai-compatible": None,  # the served model's name is the server's choice
}
DEFAULT_ENDPOINTS: dict[str, str | None] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "openai-compatible": None,
}
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT_S = 120.0
"""Defaults of every call: a whole call (retries included) ends at its timeout."""
_PREFIX = {"anthropic": "ANTHROPIC", "openai": "OPENAI", "openai-compatible": "OPENAI_COMPATIBLE"}


REPLAY_ONLY = "LAB_REPLAY_ONLY"
"""Set to 1 for a replay that never calls a provider (not even the emulator) and never simulates:
what the store and the simulation cache lack is an error that says how to collect it."""


def replay_only() -> bool:
    """True when :data:`REPLAY_ONLY` is set to anything but empty, 0, false or no."""
    return os.environ.get(REPLAY_ONLY, "").strip().lower() not in ("", "0", "false", "no")


class ConfigurationError(LabError, RuntimeError):
    """The set-up cannot make a call; the message says what to set."""


@dataclass(frozen=True)
class ProviderSettings:
    """Where and how to reach one provider. The key never appears in a repr."""

    provider: str
    endpoint: str
    model: str
    api_key: str = field(repr=False)
    key_configured: bool

    @property
    def custom_endpoint(self) -> bool:
        return self.endpoint != DEFAULT_ENDPOINTS[self.provider]

    @property
    def public_endpoint(self) -> str:
        """The endpoint without credentials or query: what records, manifests and messages show."""
        return clean_url(self.endpoint)


@functools.cache
def _dotenv(path: str) -> dict[str, str]:
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        value = _dotenv(str(Path.cwd() / ".env")).get(name)
    return value or None


def remember_secrets() -> None:
    """Mask from now on every secret the environment and ``.env`` hold (keys, tokens, base URL credentials),
    wherever something echoes one (see :func:`lab.core.redact.remember_environment`)."""
    remember_environment({**_dotenv(str(Path.cwd() / ".env")), **os.environ})


def key_set(provider: str) -> bool:
    """Whether a key for ``provider`` is set (in the environment or ``.env``); the key itself is never shown."""
    return _env(env_var(provider, "API_KEY")) is not None


def env_var(provider: str, suffix: str) -> str:
    """The environment variable for a provider setting, e.g. ``OPENAI_BASE_URL``."""
    return f"{_PREFIX[provider]}_{suffix}"


def resolve(provider: str | None = None, model: str | None = None, base_url: str | None = None,
            *, require_key: bool = True) -> ProviderSettings:
    """Settings for one call: arguments first, then environment, then defaults.

    ``require_key=False`` resolves without a key, e.g. to name a recorded call.
    """
    chosen = _env("LLM_PROVIDER") or DEFAULT_PROVIDER
    provider = provider or chosen
    if provider not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    endpoint = base_url or _env(env_var(provider, "BASE_URL")) or DEFAULT_ENDPOINTS[provider]
    if endpoint is None:
        raise ConfigurationError(
            f"{provider} needs an endpoint: set {env_var(provider, 'BASE_URL')}, "
            "e.g. http://localhost:8000/v1 for a local vLLM server"
        )
    model = (model or _env(env_var(provider, "MODEL")) or (_env("LLM_MODEL") if provider == chosen else None)
             or DEFAULT_MODELS[provider])
    if model is None:
        raise ConfigurationError(f"{provider} needs a model: pass model=... or set {env_var(provider, 'MODEL')}")
    key = _env(env_var(provider, "API_KEY"))
    remember(key)
    remember_url(endpoint)
    settings = ProviderSettings(provider, endpoint.rstrip("/"), model, key or "unused", key is not None)
    if key is None and require_key and not settings.custom_endpoint:
        raise ConfigurationError(
            f"no API key for {provider}: set {env_var(provider, 'API_KEY')} in the environment or in .env; or work "
            f"offline: add --emulator PROFILE to `lab collect`, or run `lab emulator` and set "
            f"{env_var(provider, 'BASE_URL')} to it"
        )
    return settings
