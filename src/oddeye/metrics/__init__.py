"""oddeye.metrics."""
