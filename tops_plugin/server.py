"""`python -m tops_plugin.server`: the `tops-serve` command (`tops_plugin.cli.serve`)."""

from tops_plugin.cli.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
