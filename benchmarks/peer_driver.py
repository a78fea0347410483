"""Runs one workload through the peer engine, rlms (alexzhang13/rlm), inside its own throwaway venv.

    <peer-venv>/bin/python benchmarks/peer_driver.py '{"base_url": ..., "root": ..., "sub": ..., ...}'

Prints one JSON line: {"started": monotonic, "ended": monotonic, "answer": str, "error": str|null,
"cost": float}. Imports nothing from rlm_desktop: it runs under the peer's own dependencies.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    spec = json.loads(sys.argv[1])
    from rlm.core import lm_handler

    # The peer's batch concurrency is a constructor default (16) its RLM class does not expose.
    defaults = list(lm_handler.LMHandler.__init__.__defaults__)
    defaults[-1] = int(spec.get("concurrency", 16))
    lm_handler.LMHandler.__init__.__defaults__ = tuple(defaults)
    # Its clients and REPL load on first use: loaded here, so run start is timed warm, as ours is (in-process)
    import importlib

    from rlm import RLM

    for name in ("openai", "rlm.clients.openai", "rlm.environments.local_repl"):
        importlib.import_module(name)

    context: object = spec.get("context", "")
    if spec.get("context_file"):
        with open(spec["context_file"], encoding="utf-8") as f:
            context = f.read()
    backend = {"model_name": spec["root"], "base_url": spec["base_url"], "api_key": "k"}
    started = time.monotonic()
    error, answer, cost = None, "", 0.0
    try:
        engine = RLM(
            backend="openai",
            backend_kwargs=backend,
            other_backends=["openai"],
            other_backend_kwargs=[{**backend, "model_name": spec["sub"]}],
            environment="local",
            max_iterations=int(spec.get("max_iterations", 60)),
            max_budget=spec.get("cap"),
        )
        result = engine.completion(context, root_prompt=spec.get("question", "Q"))
        answer = str(result.response)
        cost = float(getattr(result.usage_summary, "total_cost", 0.0) or 0.0)
    except Exception as exc:  # a budget stop is an exception in the peer: reported, not fatal
        error = f"{type(exc).__name__}: {exc}"[:300]
        spent = getattr(exc, "spent", None)
        cost = float(spent) if spent is not None else cost
    ended = time.monotonic()
    print(json.dumps({"started": started, "ended": ended, "answer": answer, "error": error, "cost": cost}))


if __name__ == "__main__":
    main()
