"""One module per `drdeck` subcommand; each is imported only when it runs."""
