"""One live run, split by seam (see the modules)."""
