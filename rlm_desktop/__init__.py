"""RLM Desktop: investigate large document collections with a Recursive Language Model."""

__version__ = "0.1.0"
