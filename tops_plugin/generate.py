"""`python -m tops_plugin.generate`: the `tops-generate` command (`tops_plugin.cli.generate`)."""

from tops_plugin.cli.generate import main

if __name__ == "__main__":
    raise SystemExit(main())
