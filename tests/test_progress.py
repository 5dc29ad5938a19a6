"""dho.progress: a bar on a terminal, readable lines in a log file."""

from __future__ import annotations

import io
import re

from dho.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_one_line_per_tenth_and_one_at_the_end():
    log = io.StringIO()
    bar = Progress(25, "pretrain tiny CLIP", stream=log)
    for step in bar.iterate(range(25)):
        bar.set(loss=1.0 / (step + 1))
    lines = log.getvalue().splitlines()
    assert [int(re.match(r"pretrain tiny CLIP: (\d+)/25 steps", ln).group(1)) for ln in lines] == [
        3, 5, 8, 10, 13, 15, 18, 20, 23, 25]
    assert lines[4].startswith("pretrain tiny CLIP: 13/25 steps (52 %), 0 s elapsed, ~0 s left, loss 0.0")
    assert lines[-1].startswith("pretrain tiny CLIP: 25/25 steps (100 %), ") and "left" not in lines[-1]
    assert "\r" not in log.getvalue()


def test_lines_are_spaced_in_time_but_the_last_one_always_comes():
    log = io.StringIO()
    bar = Progress(100, "epoch 1/8", stream=log, min_interval_s=3600)
    for _ in bar.iterate(range(100)):
        pass
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[-1]]
    assert log.getvalue().startswith("epoch 1/8: 100/100 steps (100 %)")


def test_a_terminal_gets_a_bar_and_no_lines_and_can_be_turned_off():
    term = FakeTerminal()
    for _ in Progress(20, "demo data", unit="img", stream=term).iterate(range(20)):
        pass
    out = term.getvalue()
    assert "\r" in out and "demo data" in out and "imgs (" not in out  # a tqdm bar, not log lines
    quiet = FakeTerminal()
    for _ in Progress(20, "demo data", stream=quiet, bar=False).iterate(range(20)):
        pass
    assert quiet.getvalue() == ""


def test_resumed_loop_counts_from_where_it_was():
    log = io.StringIO()
    bar = Progress(10, "epochs", unit="epoch", stream=log, initial=5)
    for _ in range(5):
        bar.update()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("epochs: 6/10 epochs (60 %)") and lines[-1].startswith("epochs: 10/10 epochs (100 %)")
