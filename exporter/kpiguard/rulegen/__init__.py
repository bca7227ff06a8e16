"""rulegen."""
