"""``tops-reward-path`` (``python -m tops_plugin.reward_path``): print the installed path of the OpenRLHF
reward file.

Use it as ``--reward.remote_url "$(tops-reward-path)"``.
"""

from __future__ import annotations

import argparse

from tops_plugin.cli.args import command_parser
from tops_plugin.reward.scorer import reward_func_path


def build_parser() -> argparse.ArgumentParser:
    return command_parser("tops-reward-path", "Print the installed path of the reward file OpenRLHF loads "
                          "(--reward.remote_url), so a launch script need not know where the package lives.")


def main(argv: list[str] | None = None) -> None:
    build_parser().parse_args(argv)
    print(reward_func_path())
