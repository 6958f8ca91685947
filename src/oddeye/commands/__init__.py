"""One module per ``oddeye`` sub-command (discovered by oddeye.cli)."""
