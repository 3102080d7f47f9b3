"""The only layer that runs SQL."""
