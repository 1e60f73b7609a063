"""``tops-serve`` (``python -m tops_plugin.server``): serve rewards for OpenRLHF over HTTP
(`tops_plugin.reward.server`).

Parses the options, builds the verifier pool (local processes, or Ray actors with ``--ray``) and the scorer
from the reward config, and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import replace

from tops_plugin.cli.args import command_parser, input_file, port, positive_float, positive_int
from tops_plugin.judging.ray_verifier import RayVerifier
from tops_plugin.judging.verifier import Verifier
from tops_plugin.reward.scorer import Scorer, load_config
from tops_plugin.reward.server import TOKEN_ENV, ServerSettings, is_loopback, make_app, serve


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "tops-serve",
        "Serve rewards for OpenRLHF over HTTP: POST /get_reward judges each response against its gold answer.\n\n"
        f"Binds 127.0.0.1 unless told otherwise; any other address needs a bearer token (--token or ${TOKEN_ENV}).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 is every interface")
    parser.add_argument("--port", type=port, default=5000, help="port to listen on; 0 picks a free one (printed)")
    parser.add_argument("--config", type=input_file, default=None, metavar="FILE",
                        help="reward config YAML (default: $TOPS_REWARD_CONFIG, else the built-in defaults: mode "
                        "correct, 5 s)")
    parser.add_argument("--token", default=None, help=f"bearer token (default: ${TOKEN_ENV}); required off loopback")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="verifier worker processes, per actor with --ray (default: the reward config's, "
                        "else two per core)")
    parser.add_argument("--timeout", type=positive_float, default=None, metavar="SEC",
                        help="deadline per item, seconds (default: the reward config's timeout)")
    parser.add_argument("--ray", action="store_true", help="judge on Ray actors (RAY_ADDRESS or a local instance)")
    parser.add_argument("--ray-actors", type=positive_int, default=None, metavar="N",
                        help="Ray actors (default: one per alive node)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-body-bytes", type=positive_int, default=ServerSettings.max_body_bytes, metavar="N",
                        help="largest request body; larger ones get 413")
    limits.add_argument("--max-queue", type=positive_int, default=ServerSettings.max_queue, metavar="N",
                        help="items in flight before new requests get 503")
    limits.add_argument("--threads", type=positive_int, default=ServerSettings.threads, metavar="N",
                        help="threads feeding the verifier (each serves one request at a time)")
    limits.add_argument("--request-budget", type=positive_float, default=ServerSettings.request_budget_s,
                        metavar="SEC", help="seconds for a whole request; items not started by then are 'timeout'")
    limits.add_argument("--header-timeout", type=positive_float, default=ServerSettings.header_timeout_s,
                        metavar="SEC", help="seconds a connection has to send a request's headers; also the idle "
                        "keep-alive limit")
    limits.add_argument("--body-timeout", type=positive_float, default=ServerSettings.body_timeout_s, metavar="SEC",
                        help="seconds to send a request's body once its headers are in (else 408)")
    limits.add_argument("--max-connections", type=positive_int, default=ServerSettings.max_connections, metavar="N",
                        help="open connections before new ones get 503 (size to the rollout concurrency)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse options, build the verifier and scorer, serve."""
    parser = build_parser()
    args = parser.parse_args(argv)

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        parser.error(f"--host {args.host} is reachable from other machines: give --token or set {TOKEN_ENV}")
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        parser.error(f"reward config: {exc}")
    # Default: two verifier processes per core. A stuck item spins in C code until its deadline; with
    # spare processes the items queued behind it start at once (measured: p99 3.1 s instead of 4.1 s at a
    # 3 s deadline, 1% hostile items, 32 clients on 2 cores; perf/reward_server.py).
    workers = args.workers or config.workers or 2 * (os.cpu_count() or 1)
    timeout = args.timeout if args.timeout is not None else config.timeout
    if args.ray:
        verifier = RayVerifier(actors=args.ray_actors, workers=workers, timeout=timeout)
    else:
        verifier = Verifier(workers=workers, timeout=timeout)
    scorer = Scorer(replace(config, workers=workers, timeout=timeout), verifier)
    settings = ServerSettings(
        token=token,
        max_body_bytes=args.max_body_bytes,
        max_queue=args.max_queue,
        threads=args.threads,
        deadline_s=timeout,
        request_budget_s=args.request_budget,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        max_connections=args.max_connections,
    )
    _raise_open_file_limit(settings.max_connections + 4 * workers + 64)
    app = make_app(scorer, settings, close=verifier.close)
    asyncio.run(
        serve(
            app,
            args.host,
            args.port,
            shutdown_timeout=max(60.0, 4 * timeout),
            settings=settings,
            ready=lambda url: print(
                f"reward server ({config.mode}) listening on {url}/get_reward", flush=True
            ),
        )
    )


def _raise_open_file_limit(wanted: int) -> None:
    """Lift the soft limit on open files towards `wanted` (each connection and worker pipe is one)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


if __name__ == "__main__":
    main()
