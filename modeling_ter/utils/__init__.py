"""Small shared helpers: atomic file writes and the cache folder."""
