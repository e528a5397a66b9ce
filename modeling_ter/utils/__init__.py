"""Small shared helpers: atomic file writes, the cache folder and the CPU thread policy."""
