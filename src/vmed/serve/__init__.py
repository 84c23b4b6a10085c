"""vmed.serve."""
