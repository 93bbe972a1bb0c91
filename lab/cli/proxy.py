"""``lab proxy``: see every call an application makes, and fall back or hedge by a policy file."""

from __future__ import annotations

import argparse

from lab.cli.common import PORT, SECONDS, add_run, http_url, label, number
from lab.proxy import DEFAULT_PORT

SECONDS_ABOVE_0 = number(float, above=0, maximum=3600, what="a number of seconds")


def _proxy(args: argparse.Namespace) -> int:
    from lab.proxy import serve

    serve(args.run, anthropic_upstream=args.anthropic_upstream, openai_upstream=args.openai_upstream,
          policy=args.policy, host=args.host or "127.0.0.1", port=args.port, label=args.window,
          record_text=args.record_text, timeout_s=args.timeout, grace_s=args.grace, allow_remote=args.host is not None,
          command=" ".join(["lab", *args.argv]))  # the run's lock redacts it
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    from lab.core.config import DEFAULT_ENDPOINTS
    from lab.proxy import DEFAULT_GRACE_S, DEFAULT_TIMEOUT_S

    proxy = commands.add_parser(
        "proxy", help="record every call your application makes (and fall back or hedge by a policy)",
        description="A local pass-through for the Anthropic and OpenAI APIs: point ANTHROPIC_BASE_URL at "
                    "http://127.0.0.1:PORT and OPENAI_BASE_URL at http://127.0.0.1:PORT/v1; every call is forwarded "
                    "with your own credentials, streamed back as it arrives, and recorded in RUN (never a key or a "
                    "prompt; answers' text only with --record-text). Stop it with Ctrl-C or SIGTERM.")
    add_run(proxy, "the run to record into (created if new)")
    proxy.add_argument("--port", type=PORT, default=DEFAULT_PORT, help="TCP port to listen on, 1 to 65535")
    proxy.add_argument("--host", default=None,
                       help="address to listen on (default: 127.0.0.1; anything beyond loopback exposes your "
                            "traffic and keys, so it must be asked for here)")
    proxy.add_argument("--anthropic-upstream", type=http_url, default=DEFAULT_ENDPOINTS["anthropic"], metavar="URL",
                       help="where Anthropic requests go, as ANTHROPIC_BASE_URL takes it")
    proxy.add_argument("--openai-upstream", type=http_url, default=DEFAULT_ENDPOINTS["openai"], metavar="URL",
                       help="where OpenAI requests go, as OPENAI_BASE_URL takes it")
    proxy.add_argument("--policy", metavar="FILE.toml",
                       help="routes, fallback, hedging and shadow mode (see examples/proxy-policy.toml)")
    proxy.add_argument("--window", type=label, metavar="LABEL",
                       help="this session's label in the run (default: its start time)")
    proxy.add_argument("--record-text", action="store_true",
                       help="keep each answer's text in its record (prompts are never kept, only a hash)")
    proxy.add_argument("--timeout", type=SECONDS_ABOVE_0, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help="each upstream attempt's deadline, unless its route sets timeout_s")
    proxy.add_argument("--grace", type=SECONDS, default=DEFAULT_GRACE_S, metavar="SECONDS",
                       help="on SIGTERM, how long answers in flight may take to finish before they are cut")
    proxy.set_defaults(handler=_proxy)
