"""vmed.evaluation."""
