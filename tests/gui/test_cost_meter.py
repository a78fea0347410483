"""The cost meter: dollars against the cap, tokens, calls, a ticking clock and the Stop button."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from sample_case import QUESTION, answer_script, build_sample_case, run_config

from rlm_desktop.engine.events import CostChanged, RunFinished, RunStarted
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.gui.cost_meter import CostMeter, elapsed_text


def make_meter(qtbot) -> CostMeter:
    meter = CostMeter()
    qtbot.addWidget(meter)
    meter.resize(620, 80)
    meter.show()
    qtbot.waitExposed(meter)
    return meter


def test_numbers_against_a_cap(qtbot):
    meter = make_meter(qtbot)
    meter.reset(2.0)
    assert "$0.0000" in meter.amount_label.text() and "of $2.00" in meter.amount_label.text()
    assert not meter.stop_button.isEnabled()
    meter.set_running(True)
    meter.apply(CostChanged("r", 0.0123, 0.05, 2.0, 3, 1234, 56, 4.2))
    # while a run goes, a burst of cost events is drawn once, when the event loop next turns
    qtbot.waitUntil(lambda: "$0.0123" in meter.amount_label.text(), timeout=1000)
    assert "of $2.00" in meter.amount_label.text()
    assert meter.detail_label.text().startswith("1,234 in / 56 out tokens")
    assert "3 calls" in meter.detail_label.text()
    spent, committed = meter.bar.fraction()
    assert abs(spent - 0.0123 / 2) < 1e-9 and abs(committed - (0.0123 + 0.05) / 2) < 1e-9
    assert "reserved" in meter.bar.toolTip()
    meter.apply(CostChanged("r", 1.9, 0.0, 2.0, 40, 500_000, 9_000, 60.0))
    qtbot.waitUntil(lambda: "40 calls" in meter.detail_label.text(), timeout=1000)
    assert meter.bar.colour().red() > 180  # nearly at the cap: the bar turns warm
    grab = meter.bar.grab().toImage()
    assert grab.pixelColor(3, grab.height() // 2) == meter.bar.colour()  # the filled part is drawn


def test_without_a_cap_the_bar_stays_empty(qtbot):
    meter = make_meter(qtbot)
    meter.reset(None)
    meter.apply(CostChanged("r", 0.5, 0.0, None, 1, 10, 1, 0.5))
    assert "no cap" in meter.amount_label.text() and "$0.5000" in meter.amount_label.text()
    assert meter.bar.fraction() == (0.0, 0.0)


def test_the_clock_ticks_between_events_and_stops_at_the_end(qtbot):
    meter = make_meter(qtbot)
    meter.reset(1.0)
    meter.apply(RunStarted("r", "q", None))  # the meter only needs to know the run began
    assert meter.running and meter.stop_button.isEnabled()
    meter.apply(CostChanged("r", 0.01, 0.0, 1.0, 1, 100, 10, 5.0))
    first = meter.detail_label.text()
    qtbot.waitUntil(lambda: meter.detail_label.text() != first, timeout=1000)  # no event, yet it moves
    assert meter.elapsed_s > 5.0
    meter.apply(RunFinished("r", "completed", {"cost_usd": 0.02}))
    assert not meter.running and not meter.stop_button.isEnabled()
    stopped_at = meter.detail_label.text()
    qtbot.wait(450)
    assert meter.detail_label.text() == stopped_at and "$0.0200" in meter.amount_label.text()


def test_stop_button_is_red_while_running_and_emits_once(qtbot):
    meter = make_meter(qtbot)
    meter.reset(1.0)
    assert meter.stop_button.toolTip() == "Stop the run (Esc)"
    disabled = meter.stop_button.grab().toImage()
    meter.set_running(True)
    running = meter.stop_button.grab().toImage()
    middle = running.pixelColor(8, running.height() // 2)
    assert middle.red() > 180 and middle.green() < 90  # red while a run can be stopped
    assert disabled.pixelColor(8, disabled.height() // 2).red() < 240
    stops = []
    meter.stop_requested.connect(lambda: stops.append(1))
    qtbot.mouseClick(meter.stop_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(meter.stop_button, Qt.MouseButton.LeftButton)  # a second press does nothing more
    assert stops == [1] and meter.stop_button.text() == "Stopping…"
    meter.set_running(False)
    assert meter.stop_button.text().endswith("Stop") and not meter.stop_button.isEnabled()


def test_elapsed_text():
    assert elapsed_text(4.24) == "4.2 s"
    assert elapsed_text(73.2) == "1:13"
    assert elapsed_text(3725) == "1:02:05"


class Bridge(QObject):
    event = Signal(object)


def test_live_run_totals_match_the_record(qtbot, tmp_path, fake_openai):
    sample = build_sample_case(tmp_path)
    fake_openai.handler = answer_script()
    meter = make_meter(qtbot)
    config = run_config(fake_openai)
    meter.reset(config.cap_usd)
    bridge = Bridge()
    bridge.event.connect(meter.apply, Qt.ConnectionType.QueuedConnection)
    handle = RunHandle(sample.case_path, QUESTION, config, "sk-test")
    handle.subscribe(lambda event: bridge.event.emit(event))
    handle.start()
    qtbot.waitUntil(lambda: meter.running, timeout=10_000)
    qtbot.waitUntil(lambda: handle.done and not meter.running, timeout=30_000)
    record = handle.wait(1)
    usage = record["usage"].values()
    assert meter.calls == record["calls"] == 4
    assert meter.prompt_tokens == sum(u["prompt_tokens"] for u in usage)
    assert meter.completion_tokens == sum(u["completion_tokens"] for u in usage)
    assert abs(meter.spent_usd - record["cost_usd"]) < 1e-9 and meter.reserved_usd == 0
    assert f"of {'$1.00'}" in meter.amount_label.text()
    assert "4 calls" in meter.detail_label.text()


def test_billed_and_held_are_shown_apart(qtbot):
    meter = make_meter(qtbot)
    meter.reset(0.5)
    meter.apply(
        CostChanged("r", 0.12, 0.0, 0.5, 4, 900, 80, 3.0, billed_usd=0.02, held_usd=0.10, held_estimate_usd=0.015)
    )
    text = meter.amount_label.text()
    assert "$0.0200" in text and "$0.1000 held" in text and "of $0.50" in text
    tip = meter.amount_label.toolTip()
    assert "did not report" in tip and "about $0.0150" in tip
    spent, _ = meter.bar.fraction()
    assert abs(spent - 0.12 / 0.5) < 1e-9  # the cap counts billed + held
    meter.apply(RunFinished("r", "cancelled", {"cost_usd": 0.12, "cost_billed_usd": 0.02, "cost_held_usd": 0.10}))
    assert "$0.0200" in meter.amount_label.text() and "$0.1000 held" in meter.amount_label.text()


def test_a_run_against_a_server_that_is_down_shows_no_spend(qtbot, tmp_path, closed_port):
    port = closed_port
    sample = build_sample_case(tmp_path)

    class Fake:
        base_url = f"http://127.0.0.1:{port}/v1"

    meter = make_meter(qtbot)
    meter.reset(0.5)
    handle = RunHandle(sample.case_path, QUESTION, run_config(Fake, cap_usd=0.5, max_retries=2), "sk-test")

    class Relay(QObject):
        event = Signal(object)

    relay = Relay()
    relay.event.connect(meter.apply, Qt.ConnectionType.QueuedConnection)
    handle.subscribe(relay.event.emit)
    handle.start()
    record = handle.wait(30)
    qtbot.waitUntil(lambda: not meter.running, timeout=5000)
    assert record["status"] == "failed" and "connection refused" in record["error"]
    assert record["cost_usd"] == 0.0 and "$0.0000" in meter.amount_label.text()
    assert "held" not in meter.amount_label.text()


def test_a_burst_of_cost_events_during_a_run_is_drawn_once(qtbot):
    meter = make_meter(qtbot)
    meter.reset(2.0)
    meter.set_running(True)
    texts: list[str] = []
    original = meter.detail_label.setText
    meter.detail_label.setText = lambda text: (texts.append(text), original(text))  # type: ignore[method-assign]
    for calls in range(1, 21):
        meter.apply(CostChanged("r", 0.001 * calls, 0.0, 2.0, calls, 100 * calls, 10 * calls, 1.0))
    assert texts == []  # nothing drawn per event...
    qtbot.waitUntil(lambda: bool(texts), timeout=1000)
    assert len(texts) == 1 and "20 calls" in texts[0]  # ...the burst's last numbers, once
    assert "$0.0200" in meter.amount_label.text()
    meter.apply(RunFinished("r", "completed", {"cost_usd": 0.02}))
    assert not meter.running and "$0.0200" in meter.amount_label.text()  # the end is drawn at once
