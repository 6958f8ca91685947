"""oddeye.bench."""
