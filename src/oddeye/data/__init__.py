"""oddeye.data."""
