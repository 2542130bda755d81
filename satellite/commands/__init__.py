"""The commands behind the CLI: run, check, devices, listen, simulate, config."""
