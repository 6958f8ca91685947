"""oddeye.semisup."""
