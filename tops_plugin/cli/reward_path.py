"""``python -m tops_plugin.reward_path``: print the installed path of the OpenRLHF reward file.

Use it as ``--reward.remote_url "$(python -m tops_plugin.reward_path)"``.
"""

from __future__ import annotations

from tops_plugin.reward.scorer import reward_func_path


def main() -> None:
    print(reward_func_path())


if __name__ == "__main__":
    main()
