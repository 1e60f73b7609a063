"""`python -m tops_plugin.check`: the `tops-check` command (`tops_plugin.cli.check`)."""

from tops_plugin.cli.check import main

if __name__ == "__main__":
    raise SystemExit(main())
