"""The RLM engine: model calls, spending control and the recursive investigation loop."""
