"""The progress display without a terminal (CI, a pipe): plain lines, one event each, in order,
never wrapped."""
from __future__ import annotations

import io
import re

from rayfit.progress import Display, progress_hub


def test_a_stage_is_done_after_its_last_epoch_and_no_line_is_wrapped(ray_session):
    import ray

    out = io.StringIO()
    hub = progress_hub()
    with Display(out, live=False) as display:
        display.start("torch_mlp", "torch_mlp (one task)", total=22)
        with display.follow(hub, interval=60):  # the pump would not drain again for a minute
            ray.get([hub.push.remote({"stage": "torch_mlp", "epoch": e, "epochs": 22,
                                      "metrics": {"train_loss": 0.5, "val_loss": 0.4}}) for e in range(1, 23)])
            display.finish("torch_mlp", "22 epochs, best epoch 20, " + "a long summary " * 10)
    lines = out.getvalue().splitlines()
    epochs = [int(m.group(1)) for line in lines if (m := re.search(r"torch_mlp: (\d+)/22", line))]
    done = next(i for i, line in enumerate(lines) if "torch_mlp: done" in line)
    assert epochs == list(range(1, 23))  # every epoch, in order ...
    assert all(i < done for i, line in enumerate(lines) if re.search(r"torch_mlp: \d+/22", line))  # ... before done
    assert lines[done].rstrip().endswith("a long summary")  # one line, however long: not wrapped at 80 columns
    assert len(lines[done]) > 150


def test_a_stage_says_how_long_it_has_left_at_its_pace(monkeypatch):
    import rayfit.progress as progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    out = io.StringIO()
    display = Display(out, live=False)
    display.start("torch_mlp", "torch_mlp (one task)", total=10)
    now[0] += 8.0
    display.advance("torch_mlp", 4, 10, "val_loss=0.4")  # 2 s an epoch, 6 to go
    now[0] += 2.0
    display.advance("torch_mlp", 10, 10, "val_loss=0.3")  # the last: nothing left to estimate
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("torch_mlp: 4/10 val_loss=0.4, about 12 s left"), lines
    assert lines[2].endswith("torch_mlp: 10/10 val_loss=0.3"), lines


def test_a_hub_slow_to_answer_is_asked_again_and_its_heartbeats_go_on(monkeypatch):
    """A drain that times out (a busy node) is not a lost hub: the next one delivers the events, and
    each is a heartbeat of the stage (what the watchdog listens to)."""
    import time

    import ray

    import rayfit.progress as progress

    class Hub:
        class drain:
            @staticmethod
            def remote():
                return "ref"

    answers = [ray.exceptions.GetTimeoutError("slow"),
               [{"stage": "torch_mlp", "epoch": 1, "epochs": 3, "metrics": {"val_loss": 0.5}}],
               [{"stage": "torch_mlp", "epoch": 2, "epochs": 3, "metrics": {"val_loss": 0.4}}]]

    def get(ref, timeout=None):
        answer = answers.pop(0) if answers else []
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(progress.ray, "get", get)
    out, beats = io.StringIO(), []
    with Display(out, live=False) as display:
        display.listeners.append(beats.append)
        display.start("torch_mlp", "torch_mlp (one task)", total=3)
        with display.follow(Hub(), interval=0.01):
            while answers:
                time.sleep(0.01)
    text = out.getvalue()
    assert "progress actor was lost" not in text, text
    assert "torch_mlp: 2/3" in text and beats.count("torch_mlp") >= 2, (text, beats)
