"""One module per command, each with a `run(cfg)`."""
