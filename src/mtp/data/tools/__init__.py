"""Dataset preparation tools (format converters)."""
