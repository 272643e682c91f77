"""The bench's outputs: a table on stdout, results.json, the figures section of the docs, a plot."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Sequence

from .common import Figure

START = "<!-- figures:start - written by `make bench` (bench/report.py); do not edit by hand -->"
END = "<!-- figures:end -->"


def value_text(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("jobs/s", "records/s"):
        return f"{value:,.0f} {unit}"
    if unit == "% core":
        return f"{value:.3f} %"
    if unit == "bytes":
        return f"{value:.0f} B"
    return f"{value:.1f} {unit}" if unit == "ms" else f"{value:.2f} {unit}"


def _met(figure: Figure) -> str:
    return {True: "yes", False: "**no**", None: "-"}[figure.met]


def rows(figures: Sequence[Figure]) -> list[list[str]]:
    return [[f.what, value_text(f.value, f.unit),
             f"{f.baseline}: {value_text(f.baseline_value, f.unit)}" if f.baseline else "",
             f"{f.ratio:.2f}x" if f.ratio is not None else "", f.target, _met(f)] for f in figures]


def table(figures: Sequence[Figure]) -> str:
    """A plain-text table for the terminal."""
    head = ["figure", "measured", "baseline", "ratio", "target", "met"]
    body = [[c.replace("**", "") for c in r] for r in rows(figures)]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *body])


def write_json(path: Path, figures: Sequence[Figure], info: dict) -> None:
    path.write_text(json.dumps({**info, "figures": [f.to_dict() for f in figures]}, indent=1) + "\n")


def markdown(figures: Sequence[Figure], info: dict, image: str | None) -> str:
    """The generated figures section: machine, table, plot, what limits each figure."""
    m = info["machine"]
    lines = [START, "",
             f"Measured {info['date']} with `{info['command']}` in {info['duration_s']:.0f} s on "
             f"{m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, {m['beanstalkd']}, {m['system']}; "
             f"load average {m['load_before']:.2f} when it started (other work shared the machine). "
             "Medians of alternating runs; ratios are medians of per-round ratios.", "",
             "| Figure | Measured | Baseline | Ratio | Target | Met |",
             "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows(figures)]
    lines += ["", *_details(figures)]
    if image:
        lines += ["", f"![Throughput of each runner, and each figure against its target]({image})"]
    lines += ["", "What limits each figure:", ""]
    by_limit: dict[str, list[str]] = {}
    for f in figures:
        if f.limits:
            by_limit.setdefault(f.limits, []).append(f"*{f.what}*")
    lines += [f"- {', '.join(names)}: {limits}" for limits, names in by_limit.items()]
    return "\n".join(lines + ["", END])


def _details(figures: Sequence[Figure]) -> list[str]:
    """The numbers behind some figures, one line each."""
    out = []
    for f in figures:
        x = f.extra
        if f.key.startswith("dispatch.") and x.get("rates"):
            rates = ", ".join(f"{k} {v:,.0f}/s" for k, v in x["rates"].items())
            out.append(f"- {f.what}: {rates}; minimal listener {x['ratio_minimal']:.2f}x xargs"
                       + (f", GNU parallel {x['ratio_parallel']:.2f}x" if x.get("ratio_parallel") else "")
                       + ".")
        elif f.key == "pickup":
            new = x.get("new_tube_samples") or []
            out.append(f"- Pickup: p90 {x['p90']:.1f} ms (minimal listener: median "
                       f"{f.baseline_value:.1f} ms, p90 {x['minimal_p90']:.1f} ms)"
                       + (f"; on a tube the listener had not seen yet: median "
                          f"{sorted(new)[len(new) // 2]:.0f} ms" if new else "") + ".")
        elif f.key.startswith("idle.commands."):
            kinds = ", ".join(f"{k[4:]} {v / x['window_s']:.2f}/s" for k, v in sorted(x["by_kind"].items()) if v)
            out.append(f"- {f.what}: {kinds}.")
        elif f.key == "scale.tubes" and x.get("ratio_named"):
            out.append(f"- {f.what}: a listener told its tube (`--tubes`) instead of watching "
                       f"every one: {x['named_rate']:,.0f} jobs/s, {x['ratio_named']:.2f}x one tube.")
        elif f.key.startswith("idle.cpu.") and x.get("parts_percent"):
            parts = ", ".join(f"{p:.3f}" for p in x["parts_percent"])
            out.append(f"- {f.what}: median of {len(x['parts_percent'])} parts of the window "
                       f"({parts} %); the whole window: {x['window_percent']:.3f} %.")
        elif f.key == "submit.one":
            out.append(f"- One submit: {x['submit_nohook_ms']:.1f} ms without site hooks (as a wheel "
                       f"install runs, no editable-install finder; `python -S -c pass`: "
                       f"{x['python_nosite_ms']:.1f} ms); heavy modules imported to submit or listen: "
                       f"{', '.join(x['heavy_imports']) or 'none'}.")
        elif f.key == "body.size":
            out.append(f"- Typical sweep body: {x['unsigned']} B unsigned, {x['signed']} B signed.")
    return out


def update_docs(path: Path, section: str, start: str = START, end: str = END) -> None:
    """Replace the section between ``start`` and ``end`` in ``path`` (appended if missing).

    The fault campaign writes docs/reliability.md through here too."""
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def plot(path: Path, figures: Sequence[Figure]) -> None:
    """Dispatch rates per runner, and every ratio figure against its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    dispatch = [f for f in figures if f.key.startswith("dispatch.")]
    runners = sorted({k for f in dispatch for k in f.extra.get("rates", {})})
    width = 0.8 / max(1, len(dispatch))
    for i, f in enumerate(dispatch):
        rates = f.extra.get("rates", {})
        left.bar([r + i * width for r in range(len(runners))], [rates.get(k, 0) for k in runners],
                 width, label=f.what.split("'")[1] if "'" in f.what else f.key)
    left.set_xticks([r + width * (len(dispatch) - 1) / 2 for r in range(len(runners))], runners)
    left.set_ylabel("jobs/s (2 slots)")
    left.set_title("Running short jobs")
    left.legend()
    rated = [f for f in figures if f.ratio is not None]
    targets = [_target_ratio(f.target) for f in rated]
    right.barh([f.key for f in rated], [f.ratio for f in rated],
               color=["tab:green" if f.met else "tab:red" for f in rated])
    right.scatter(targets, [f.key for f in rated], marker="|", s=300, color="black", label="target")
    right.set_xlabel("ratio to baseline (higher is better)")
    right.set_title("Figures against their targets")
    right.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _target_ratio(target: str) -> float:
    found = re.search(r"([0-9.]+)x", target)
    return float(found.group(1)) if found else 0.0


def info(command: str, machine: dict, sizes: dict, started: float) -> dict:
    return {"date": time.strftime("%Y-%m-%d", time.localtime(started)), "command": command,
            "duration_s": time.time() - started, "machine": machine, "sizes": sizes}
