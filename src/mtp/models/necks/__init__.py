"""Necks: FPN."""
