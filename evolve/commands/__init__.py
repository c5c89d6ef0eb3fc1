"""One module per `evolve` subcommand (see `evolve/cli.py` for the protocol)."""
