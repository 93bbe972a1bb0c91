"""``lab proxy``: a local pass-through between an application and its providers that records every
call, and can fall back and hedge.

An application changes only its base URLs (``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT``,
``OPENAI_BASE_URL=http://127.0.0.1:PORT/v1``); the proxy forwards each chat request with the
caller's own credentials to the upstream its route names, streams the reply back event by event as
it arrives, and records every upstream attempt (winner, loser or shadow) as a call record in a run,
off the response's critical path. ``lab analyze --run RUN`` then reads it like any other run.

What is recorded, per attempt: the upstream's timing as :mod:`lab.llm` measures its own calls
(from the request's hand-over to the connection pool to the last byte; first content, first text,
every content chunk), tokens and stop reason from the upstream's usage, cost, status and error,
the upstream's request id, the route (``target``), the ``x-lab-task`` header (``task``), the
session (``window``) and the request's number in it (``sample``). Never a header, a key or a
prompt: a request is known by the SHA-256 of its body (in ``requests.jsonl``); an answer's text
only with ``--record-text``. An OpenAI stream carries token counts only if the application asks
for them (``stream_options.include_usage``): the proxy does not change a request to get them, so
without it those records have timing but no tokens or cost.

Modules, one concern each:

* :mod:`~lab.proxy.wire`: the two APIs as the proxy reads them (paths, events, usage, errors);
* :mod:`~lab.proxy.translate`: Anthropic <-> OpenAI, plain text chat only;
* :mod:`~lab.proxy.policy`: the TOML policy file (upstreams, routes, fallback, hedge, shadow);
* :mod:`~lab.proxy.forward`: one upstream attempt, timed as :mod:`lab.llm` times a call;
* :mod:`~lab.proxy.engine`: the policies at run time (who gets the caller, the budget, the delays);
* :mod:`~lab.proxy.record`: attempts into call records, written by the run's batched writer;
* :mod:`~lab.proxy.server`: the aiohttp server, :class:`Proxy` (in process) and :func:`serve` (the command).

In process, as the tests use it::

    with Emulator("fixed") as emu, Proxy("my-run", anthropic_upstream=emu.url_for("anthropic"),
                                         openai_upstream=emu.url_for("openai")) as proxy:
        client = anthropic.Anthropic(base_url=proxy.url_for("anthropic"), api_key=...)
"""

import importlib
from typing import Any

DEFAULT_TIMEOUT_S = 600.0
"""An attempt's deadline, first byte sent to last byte received, unless a route sets its own."""
DEFAULT_GRACE_S = 10.0
"""How long in-flight answers may take to finish once the proxy is told to stop."""
DEFAULT_PORT = 8788

_EXPORTS = {"Policy": "policy", "PolicyError": "policy", "default_policy": "policy", "load": "policy",
            "parse": "policy", "Proxy": "server", "serve": "server"}
__all__ = ["DEFAULT_GRACE_S", "DEFAULT_PORT", "DEFAULT_TIMEOUT_S", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """The server loads aiohttp: import it when first asked for (``lab --help`` stays quick)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lab.proxy' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lab.proxy.{_EXPORTS[name]}"), name)
