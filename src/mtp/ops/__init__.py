"""Pure tensor functions: relative-position helpers, RVSA window transforms."""
