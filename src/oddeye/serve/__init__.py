"""oddeye.serve."""
