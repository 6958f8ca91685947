"""oddeye.report."""
