"""Official-equivalent metrics."""
