"""An idle listener: commands it sends to beanstalkd, and CPU it uses, over a window."""

from __future__ import annotations

import time
from pathlib import Path

from .common import (Figure, Raw, Sizes, Workspace, beanstalkd, cpu_seconds, cpu_ticks_seconds, median,
                     wait_until)
from .dispatch import listeners


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _commands(stats: dict[str, str]) -> int:
    return sum(int(v) for k, v in stats.items() if k.startswith("cmd-"))


def _window(ws: Workspace, tubes: int, seconds: float, parts: int = 4) -> dict:
    """Commands per second and CPU share of one default listener with ``tubes`` tubes present.

    The window is read in ``parts``: the CPU share is the median part (a burst of
    load from elsewhere on a shared machine lands in one part), and the whole
    window's share is kept beside it.
    """
    with beanstalkd(ws) as server:
        raw = Raw(server.address)
        for i in range(tubes):
            raw.put_all(f"idle-{i}", [b"{}"], delay=3600)
        with listeners(ws, server.address) as (proc,):
            wait_until(lambda: raw.count("cmd-watch") >= tubes, 60, 0.05, "the listener to watch every tube")
            time.sleep(1.5)  # past start-up: the window is about the steady idle state
            pids = [proc.pid, *_children(proc.pid)]  # the listener and its guardian
            before, ticks0 = raw.stats(), cpu_ticks_seconds(proc.pid)
            marks = [(time.monotonic(), sum(map(cpu_seconds, pids)))]
            for _ in range(parts):
                time.sleep(seconds / parts)
                marks.append((time.monotonic(), sum(map(cpu_seconds, pids))))
            after, ticks1 = raw.stats(), cpu_ticks_seconds(proc.pid)
        raw.close()
    elapsed = marks[-1][0] - marks[0][0]
    shares = [100 * (c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in zip(marks, marks[1:])]
    sent = _commands(after) - _commands(before) - 1  # our own second ``stats``
    by_kind = {k: int(after[k]) - int(before.get(k, 0)) for k in after
               if k.startswith("cmd-") and int(after[k]) != int(before.get(k, 0))}
    by_kind["cmd-stats"] -= 1
    return {"commands_per_s": sent / elapsed, "cpu_percent": median(shares),
            "cpu_percent_parts": shares,
            "cpu_percent_window": 100 * (marks[-1][1] - marks[0][1]) / elapsed,
            "cpu_percent_ticks": 100 * (ticks1 - ticks0) / elapsed, "by_kind": by_kind,
            "window_s": elapsed}


def idle(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 5: at most 2 commands/s and under 0.1% of a core, with 1 or many tubes."""
    found = {n: _window(ws, n, sizes.idle_window) for n in (1, sizes.tubes)}
    figures = []
    for n, result in found.items():
        figures.append(Figure(
            key=f"idle.commands.{n}", what=f"idle listener, {n:,} tube(s): commands sent",
            value=result["commands_per_s"], unit="cmd/s", target="<= 2",
            met=result["commands_per_s"] <= 2.0 + 1e-9, extra=result,
            limits="one reserve-with-timeout per slot per second, one list-tubes per second."))
        figures.append(Figure(
            key=f"idle.cpu.{n}", what=f"idle listener, {n:,} tube(s): CPU (listener + guardian)",
            value=result["cpu_percent"], unit="% core", target="< 0.1", met=result["cpu_percent"] < 0.1,
            extra={"utime_stime_percent": result["cpu_percent_ticks"],
                   "parts_percent": result["cpu_percent_parts"], "window_percent": result["cpu_percent_window"]},
            limits="waking every second: the slot's reserve, list-tubes and its parsing "
                   "(the main thread sleeps until a slot ends or a signal comes)."))
    return figures
