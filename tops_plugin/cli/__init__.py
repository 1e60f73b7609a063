"""The command-line modules: thin parsers and screen output over the library.

Each command is installed as a console script (`tops-check`, `tops-generate`, `tops-select`, `tops-serve`) and
also runs as `python -m tops_plugin.<command>`. Nothing in the library imports this package.
"""
