"""oddeye.backbones."""
