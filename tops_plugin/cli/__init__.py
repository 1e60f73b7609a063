"""The command-line modules: thin parsers and screen output over the library.

Each command is installed as a console script (`tops-check`, `tops-generate`, `tops-select`, `tops-serve`,
`tops-reward-path`) and also runs as `python -m tops_plugin.<command>`. Every parser comes from
`args.command_parser`. Nothing in the library imports this package.
"""
