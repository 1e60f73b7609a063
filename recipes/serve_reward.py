"""`tops-serve-reward --port P --config reward.yaml -- COMMAND…` (`python -m recipes.serve_reward`): run
COMMAND beside a shared reward server, started before it and stopped after it.

The RL stage uses it when `rl.reward_server: start`: one `tops_plugin.reward.server` on this machine judges for
every rollout worker of the cluster, instead of one verifier pool per vLLM engine. The server needs a
token off loopback and OpenRLHF sends it in the URL, so the token stays out of the plan, the manifest and
the logs: COMMAND carries the placeholder `{token}`, replaced here by `$TOPS_REWARD_TOKEN` or, when unset,
a fresh random token. Exits with COMMAND's status; the server gets SIGTERM (it finishes the requests in
flight) whatever happens to COMMAND.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from tops_plugin.cli.args import command_parser, input_file, port, positive_float
from tops_plugin.reward.server import TOKEN_ENV

TOKEN_PLACEHOLDER = "{token}"


def wait_healthy(process: subprocess.Popen, port: int, timeout: float) -> None:
    """Return once the server answers /health; raise if it exits or does not answer in time."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the reward server exited with status {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the reward server did not answer {url} within {timeout:g} s")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "tops-serve-reward",
        "Run a command beside a shared reward server, started before it and stopped after it.\n\n"
        f"The command's {TOKEN_PLACEHOLDER} is replaced by the server's token (${TOKEN_ENV}, or a fresh "
        "random one); the exit status is the command's.",
    )
    parser.add_argument("--port", type=port, required=True, help="port the server listens on")
    parser.add_argument("--host", default="0.0.0.0", help="address the server binds; 0.0.0.0 is every interface")
    parser.add_argument("--config", type=input_file, required=True, metavar="FILE", help="reward config YAML")
    parser.add_argument("--ready-timeout", type=positive_float, default=120.0, metavar="SEC",
                        help="seconds to wait for the server's /health")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...",
                        help=f"the command to run ({TOKEN_PLACEHOLDER} is replaced by the token)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    server = subprocess.Popen(
        [sys.executable, "-m", "tops_plugin.server", "--host", args.host, "--port", str(args.port),
         "--config", str(args.config)],
        env={**os.environ, TOKEN_ENV: token}, stdin=subprocess.DEVNULL,
    )
    try:
        wait_healthy(server, args.port, args.ready_timeout)
        print(f"reward server ready on port {args.port}", flush=True)
        return subprocess.call([part.replace(TOKEN_PLACEHOLDER, quote(token, safe="")) for part in command])
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
