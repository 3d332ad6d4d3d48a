"""The `fl-crb` subcommands, one module each with `register(subparsers)` and `run(args)`."""
