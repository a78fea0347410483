"""`rlm-desktop doctor`: what this machine can wall off, and what the endpoint and each configured model can do."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlm_desktop.engine.model_info import known_context_window
from rlm_desktop.engine.probe import EndpointReport, describe_model

# What each way of walling the REPL keeps out, strongest first (the order `auto` tries them in).
ISOLATION_STRENGTH = {
    "bwrap": ("strong", "own namespaces, no network, read-only system, only the scratch folder writable; "
              "Landlock and seccomp inside too"),
    "unshare": ("strong", "own namespaces, its own read-only root and /proc, no network; Landlock and seccomp "
                "inside too"),
    "landlock": ("strong", "Landlock and seccomp, no namespaces needed: files read-only but the scratch folder, "
                 "no sockets, no new processes"),
    "rlimits": ("weak", "resource limits and an in-process audit hook only: not a wall"),
}  # fmt: skip


def isolation_report() -> dict[str, Any]:
    """Which walls this machine can build around model code (from rlm_desktop.sandbox.walls())."""
    from rlm_desktop.sandbox import walls

    found = walls()
    modes = []
    for mode, state in found["modes"].items():
        strength, keeps = ISOLATION_STRENGTH.get(mode, ("weak" if state["weak"] else "strong", ""))
        detail = "works" if state["usable"] else state["detail"]
        modes.append(
            {"mode": mode, "strength": strength, "keeps_out": keeps, "available": state["usable"], "detail": detail}
        )
    return {
        "modes": modes,
        "best": found["auto"],
        "refused": found["refused"],
        "warning": found["advice"] or None,
        "landlock_abi": found["landlock"]["abi"],
        "seccomp": found["seccomp"],
        "pids_cgroup": found["pids_cgroup"],
    }


def context_window_of(model: str, overrides: Mapping[str, int], caps_window: int | None) -> dict[str, Any]:
    """The window runs will size requests for, and where that figure comes from."""
    if overrides.get(model):
        return {"tokens": int(overrides[model]), "source": "settings"}
    if caps_window:
        return {"tokens": caps_window, "source": "server"}
    if known := known_context_window(model):
        return {"tokens": known, "source": "known"}
    return {"tokens": None, "source": None}


def doctor_json(
    report: EndpointReport,
    roles: Mapping[str, str],
    context_windows: Mapping[str, int],
    isolation: Mapping[str, Any],
    cache: Path | None,
    allow_weak_isolation: bool = False,
) -> dict[str, Any]:
    """One JSON object: the endpoint report, each model's roles and window, the machine's walls."""
    out = report.to_json()
    for model in out["models"]:
        model["roles"] = [role for role, name in roles.items() if name == model["model"]]
        model["context_window"] = context_window_of(
            model["model"], context_windows, model["caps"].get("context_window")
        )
        found = report.model(model["model"])
        model["findings"] = [list(line) for line in describe_model(found, context_windows)] if found else []
    out["root_model"] = roles.get("root")
    out["sub_model"] = roles.get("sub")
    out["isolation"] = dict(isolation)
    out["allow_weak_isolation"] = bool(allow_weak_isolation)
    out["cache"] = str(cache) if cache else None
    return out


def doctor_text(data: Mapping[str, Any]) -> str:
    """The JSON object from doctor_json as a report a person reads top to bottom."""
    lines = [f"Endpoint  {data['endpoint']}"]
    if not data["reachable"] or data["error"]:
        lines.append(f"  ✗ {data['error']}")
    else:
        listed = data["models_listed"]
        if listed is None:
            lines.append(f"  ✓ answered; {data['list_note'] or 'no model list'}")
        else:
            shown = ", ".join(listed[:8]) + (", …" if len(listed) > 8 else "")
            lines.append(f"  ✓ answered; {len(listed)} models listed" + (f": {shown}" if listed else ""))
            if data["list_note"]:
                lines.append(f"  {data['list_note']}")
    for model in data["models"]:
        roles = " and ".join(model["roles"]) or "model"
        mark = "✓" if model["ok"] else "✗"
        lines += ["", f"{roles.capitalize()} model  {model['model']}  {mark}"]
        width = max((len(topic) for topic, _ in model["findings"]), default=0)
        lines += [f"  {topic:<{width}}  {text}" for topic, text in model["findings"]]
    iso = data["isolation"]
    lines += ["", "This machine: walls around model code"]
    width = max((len(m["mode"]) for m in iso["modes"]), default=0)
    for mode in iso["modes"]:
        mark = "✓" if mode["available"] else "✗"
        lines.append(
            f"  {mode['mode']:<{width}}  {mark} {mode['strength']}: {mode['keeps_out']} ({mode['detail']})"
        )
    lines.append(
        f"  runs use: {iso['best'] or 'no real wall here: model code is refused unless weak isolation is allowed'}"
    )
    if "allow_weak_isolation" in data:
        allowed = "yes" if data["allow_weak_isolation"] else "no"
        lines.append(f"  weak isolation allowed in settings: {allowed}")
    if iso.get("warning"):
        lines.append(f"  ⚠ {iso['warning']}")
    lines.append("")
    calls = sum(m["calls"] for m in data["models"])
    if calls:
        caveats = ["estimated"] if data["cost_estimated"] else []
        caveats += [f"{name} has no price" for name in data["unpriced"]]
        spent = f"${data['cost_usd']:.6f}" + (f" ({'; '.join(caveats)})" if caveats else "")
        lines.append(f"Probe: {calls} calls, {spent}, {data['elapsed_s']:.1f} s.")
    if data.get("cache"):
        lines.append(f"Findings cached in {data['cache']}; runs use them.")
    lines.append("Ready." if data["ok"] else f"Not ready: {data['problem']}")
    return "\n".join(lines)
