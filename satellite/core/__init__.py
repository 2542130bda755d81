"""The pure core: the session state machine and the frames it takes (no I/O library)."""
