"""The campaign's figures and where they go: a table on stdout, results JSON, docs/reliability.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from bench import report as bench_report

START = "<!-- faults:start - written by `make faults` (faults/report.py); do not edit by hand -->"
END = "<!-- faults:end -->"


@dataclass
class Figure:
    """One measured figure of a scenario, and whether it meets its target (None: no target)."""

    scenario: str
    key: str
    what: str
    value: float | int | str | None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def at_most(scenario: str, key: str, what: str, value: float | None, limit: float, *,
            unit: str = "", note: str = "") -> Figure:
    met = value is not None and value <= limit
    return Figure(scenario, key, what, value, unit, f"<= {_number(limit)}{_spaced(unit)}", met, note)


def exactly(scenario: str, key: str, what: str, value: float | None, want: float, *,
            note: str = "") -> Figure:
    return Figure(scenario, key, what, value, "", f"= {_number(want)}", value == want, note)


def info(scenario: str, key: str, what: str, value: float | str | None, *, unit: str = "",
         note: str = "") -> Figure:
    return Figure(scenario, key, what, value, unit, "", None, note)


def broken(scenario: str, what: str, error: str) -> Figure:
    """The scenario could not run to its end: a missed target of its own."""
    return Figure(scenario, "completed", what, None, "", "ran to the end", False, error)


def _number(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _spaced(unit: str) -> str:
    return f" {unit}" if unit else ""


def value_text(figure: Figure) -> str:
    v = figure.value
    if v is None:
        return "-"
    if isinstance(v, float):
        if figure.unit == "s":
            return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
        return f"{v:g}{_spaced(figure.unit)}"
    return f"{v}{_spaced(figure.unit)}"


def _met(figure: Figure) -> str:
    return {True: "yes", False: "NO", None: ""}[figure.met]


def rows(figures: Sequence[Figure]) -> list[list[str]]:
    return [[f.scenario, f.what, value_text(f), f.target, _met(f)] for f in figures]


def table(figures: Sequence[Figure]) -> str:
    """A plain-text table for the terminal, with the notes of missed targets below it."""
    head = ["scenario", "figure", "measured", "target", "met"]
    body = rows(figures)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *body]]
    lines += [f"  {f.scenario}/{f.key}: {f.note}" for f in figures if f.met is False and f.note]
    return "\n".join(lines)


def passed(figures: Sequence[Figure]) -> bool:
    return all(f.met is not False for f in figures)


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    version = subprocess.run(["beanstalkd", "-v"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "beanstalkd": version,
            "load_before": round(os.getloadavg()[0], 2)}


def write_json(path: Path, figures: Sequence[Figure], info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**info, "passed": passed(figures),
                                "figures": [f.to_dict() for f in figures]}, indent=1) + "\n")


def markdown(figures: Sequence[Figure], info: dict) -> str:
    """The generated figures section of docs/reliability.md."""
    m = info["machine"]
    verdict = "every target met" if passed(figures) else "**some targets missed** (see the notes)"
    lines = [START, "",
             f"Measured {info['date']} with `{info['command']}` (seed {info['seed']}) in "
             f"{info['duration_s']:.0f} s on {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, "
             f"{m['beanstalkd']}, {m['system']}; load average {m['load_before']} when it started "
             f"(other work shared the machine). Result: {verdict}.", "",
             "| Scenario | Figure | Measured | Target | Met |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows(figures)]
    notes = [f"- *{f.scenario}, {f.what}*: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines + ["", END])


def update_docs(path: Path, section: str) -> None:
    """Replace the figures section of ``path`` (appended if its markers are missing)."""
    bench_report.update_docs(path, section, START, END)


def run_info(command: str, seed: int, sizes: dict, started: float, host: dict) -> dict:
    return {"date": time.strftime("%Y-%m-%d", time.localtime(started)), "command": command,
            "seed": seed, "duration_s": round(time.time() - started, 1), "machine": host, "sizes": sizes}
