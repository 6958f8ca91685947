"""oddeye.methods."""
