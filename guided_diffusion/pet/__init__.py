"""PET domain: volume I/O, SUV, intensity mapping, patches and metrics (numpy only)."""
