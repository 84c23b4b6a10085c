"""vmed.model."""
