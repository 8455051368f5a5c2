"""Task decoders (decode heads)."""
