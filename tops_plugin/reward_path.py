"""`python -m tops_plugin.reward_path`: print the installed OpenRLHF reward file (`tops_plugin.cli.reward_path`)."""

from tops_plugin.cli.reward_path import main

if __name__ == "__main__":
    raise SystemExit(main())
