"""The restiming command line (private; the entry point is restiming.__main__.main)."""
