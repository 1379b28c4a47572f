"""newsletter: personal research-paper digests by email."""

__version__ = "0.1.0"
