"""`rlm-desktop bench`: accuracy, cost and time of the configured models on generated RLM task suites."""
