"""`python -m tops_plugin.select`: the `tops-select` command (`tops_plugin.cli.select`)."""

from tops_plugin.cli.select import main

if __name__ == "__main__":
    raise SystemExit(main())
