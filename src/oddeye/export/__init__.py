"""oddeye.export."""
