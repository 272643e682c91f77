"""An idle listener: commands it sends to beanstalkd, and CPU it uses, over a window."""

from __future__ import annotations

import time
from pathlib import Path

from .common import Figure, Raw, Sizes, Workspace, beanstalkd, cpu_seconds, cpu_ticks_seconds, wait_until
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


def _window(ws: Workspace, tubes: int, seconds: float) -> dict:
    """Commands per second and CPU share of one default listener with ``tubes`` tubes present."""
    with beanstalkd(ws) as server:
        raw = Raw(server.address)
        for i in range(tubes):
            raw.put_all(f"idle-{i}", [b"{}"], delay=3600)
        with listeners(ws, server.address) as (proc,):
            wait_until(lambda: raw.count("cmd-watch") >= tubes, 60, 0.05, "the listener to watch every tube")
            time.sleep(1.5)  # past start-up: the window is about the steady idle state
            pids = [proc.pid, *_children(proc.pid)]  # the listener and its guardian
            before, cpu0, ticks0 = raw.stats(), sum(map(cpu_seconds, pids)), cpu_ticks_seconds(proc.pid)
            start = time.monotonic()
            time.sleep(seconds)
            after, cpu1, ticks1 = raw.stats(), sum(map(cpu_seconds, pids)), cpu_ticks_seconds(proc.pid)
            elapsed = time.monotonic() - start
        raw.close()
    sent = _commands(after) - _commands(before) - 1  # our own second ``stats``
    by_kind = {k: int(after[k]) - int(before.get(k, 0)) for k in after
               if k.startswith("cmd-") and int(after[k]) != int(before.get(k, 0))}
    by_kind["cmd-stats"] -= 1
    return {"commands_per_s": sent / elapsed, "cpu_percent": 100 * (cpu1 - cpu0) / elapsed,
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
            extra={"utime_stime_percent": result["cpu_percent_ticks"]},
            limits="waking every second: the slot's reserve, list-tubes and its parsing, "
                   "and the main thread's join timeout."))
    return figures
