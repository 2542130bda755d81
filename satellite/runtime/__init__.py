"""The runtime: composition root, pipeline, control thread, daemon, systemd, reload."""
