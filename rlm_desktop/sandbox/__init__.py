"""Sandboxed REPL worker and its asyncio host for the RLM engine."""
