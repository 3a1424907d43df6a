"""Command line, demo data and process-wide defaults for the AnyTalker data and training system."""

__version__ = "0.1.0"
