"""vmed.data."""
