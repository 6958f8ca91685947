"""oddeye.io."""
