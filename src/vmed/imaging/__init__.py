"""vmed.imaging."""
