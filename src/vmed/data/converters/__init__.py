"""vmed.data.converters."""
