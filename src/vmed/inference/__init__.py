"""vmed.inference."""
