"""vmed.training."""
