"""The scripted fake OpenAI-compatible server in its own process, as a real model server would be.

In the benchmark's process the fake server's threads would compete with the engine for the GIL and be
counted as the engine's time. Here it runs alone; TCP_NODELAY is set on every connection (tests/fake_openai.py).

    with ServerProcess(root_turns=[...], sub_delay_s=0.1) as server:
        ... server.base_url ...
        timings = server.requests()   # [{"model", "arrived", "ended", "usage"}], time.monotonic() of this machine

The child speaks on stdin/stdout: it prints its base URL, then answers each "requests" line with one JSON
line of request timings. CLOCK_MONOTONIC is one clock for every process, so the timings compare with the
benchmark's own `time.monotonic()`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]


class ServerProcess:
    """A FakeOpenAIServer running a Script (root turns, sub answers after a delay) in a child process."""

    def __init__(
        self,
        root_turns: list[str],
        sub_delay_s: float = 0.0,
        sub_answer: str = "sub answer",
        report_cost: dict[str, tuple[float, float]] | None = None,
    ):
        self.spec = {
            "root_turns": root_turns,
            "sub_delay_s": sub_delay_s,
            "sub_answer": sub_answer,
            "report_cost": report_cost or {},
        }
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fake_server"],
            cwd=ROOT_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(self.spec) + "\n")
        self.proc.stdin.flush()
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the fake server process did not start: {self.base_url!r}")
        return self

    def set_script(self, root_turns: list[str], sub_delay_s: float = 0.0, sub_answer: str = "sub answer") -> None:
        """Script the next requests anew (the window under test keeps its endpoint)."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        spec = {"root_turns": root_turns, "sub_delay_s": sub_delay_s, "sub_answer": sub_answer}
        self.proc.stdin.write("script " + json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError("the fake server process did not take the script")

    def requests(self) -> list[dict]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("requests\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def __exit__(self, *exc_info) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _serve() -> None:
    sys.path.insert(0, str(ROOT_DIR / "tests"))
    from fake_openai import FakeOpenAIServer
    from rlm_script import Script

    def script_of(spec: dict) -> Script:
        answer = spec["sub_answer"]
        return Script(spec["root_turns"], sub=lambda prompt: answer, sub_delay_s=float(spec["sub_delay_s"]))

    spec = json.loads(sys.stdin.readline())
    current = [script_of(spec)]

    def handler(request: dict):
        # A root turn is counted by the assistant messages that carry code: engines that add other assistant
        # messages (the peer engine's metadata message) get the same script as ours.
        messages = [m for m in request["messages"] if m["role"] != "assistant" or "```" in str(m.get("content"))]
        return current[0]({**request, "messages": messages})

    with FakeOpenAIServer(handler) as server:
        server.chunked_streams = True  # as OpenAI and vLLM stream: chunked, on a kept connection
        server.report_cost = {model: tuple(price) for model, price in spec["report_cost"].items()}
        print(server.base_url, flush=True)
        for line in sys.stdin:
            if line.startswith("script "):
                current[0] = script_of(json.loads(line[len("script ") :]))
                print("ok", flush=True)
            elif line.strip() == "requests":
                rows = [
                    {
                        "model": r.json.get("model") if r.json else None,
                        "arrived": r.arrived,
                        "ended": r.ended,
                        "usage": r.usage_sent,  # what the client received: what a provider bills
                    }
                    for r in server.chat_requests
                ]
                print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    _serve()
