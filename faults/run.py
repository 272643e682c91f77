"""Run glowlab's fault campaign: ``python -m faults [--quick] [--only NAME]``.

Real listeners, a real beanstalkd with its binlog, real faults: ``kill -9`` of
listeners and of beanstalkd, a network cut longer than the TTR, a collector
killed mid-collection, SMTP servers that refuse, say nothing or crawl, and a
mixed chaos run. Every scenario is bounded in count and time and cleans up
after itself. The full run writes faults/results.json and the figures section
of docs/reliability.md; ``--quick`` (CI's size) writes only what ``--out`` and
``--docs`` name. Exit status 1 when any target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Sequence

from . import broker, chaos, collector, kills, netcut, report, smtp
from .context import Context, Sizes
from .report import Figure

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS: dict[str, ModuleType] = {
    "kills": kills, "broker": broker, "netcut": netcut, "collector": collector, "smtp": smtp,
    "chaos": chaos,
}
"""Name -> scenario module (``run(ctx)`` and ``SCENARIO``), in the order they run."""


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI's size: about three minutes")
    p.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only these (repeatable)")
    p.add_argument("--seed", type=int, help="seed of every random choice (default: a new one)")
    p.add_argument("--out", type=Path, help="results JSON (default faults/results.json; none with --quick)")
    p.add_argument("--docs", type=Path, help="page whose figures section to rewrite "
                                             "(default docs/reliability.md; none with --quick)")
    p.add_argument("--work", type=Path, help="folder for the scenarios' files (default: a new temporary "
                                             "one, removed unless a target was missed)")
    args = p.parse_args(argv)
    if not args.quick and not args.only:
        args.out = args.out or ROOT / "faults" / "results.json"
        args.docs = args.docs or ROOT / "docs" / "reliability.md"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if shutil.which("beanstalkd") is None:
        print("faults: beanstalkd is not installed; run 'make faults' (it installs it)", file=sys.stderr)
        return 2
    sizes = Sizes.small() if args.quick else Sizes.full()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    work = args.work or Path(tempfile.mkdtemp(prefix="glowlab-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GLOWLAB_HOME"] = str(work / "home")  # the journal of the campaign's sweeps
    # a TERM (CI's timeout, say) must still run every clean-up: namespaces, listeners, brokers
    signal.signal(signal.SIGTERM, _interrupt)
    started, host = time.time(), report.machine()
    ctx = Context(work, sizes, seed)
    try:
        figures = _run_all(ctx, args.only or list(SCENARIOS))
    except KeyboardInterrupt:  # every scenario cleans up on its way out
        Context.say(f"interrupted; files kept in {work}")
        return 130
    command = "make faults" if not args.quick else "python -m faults --quick"
    return _report(args, figures, report.run_info(command, seed, dataclasses.asdict(sizes), started, host),
                   work)


def _report(args: argparse.Namespace, figures: list[Figure], info: dict, work: Path) -> int:
    """Print and write the figures; remove the work folder unless a target was missed."""
    print(report.table(figures))
    if args.out:
        report.write_json(args.out, figures, info)
    if args.docs:
        report.update_docs(args.docs, report.markdown(figures, info))
    ok = report.passed(figures)
    if args.work is None:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            Context.say(f"logs and files kept in {work}")
    Context.say(f"{'every target met' if ok else 'TARGETS MISSED'} (seed {info['seed']}, "
                f"{info['duration_s']:.0f} s)")
    return 0 if ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_all(ctx: Context, names: Sequence[str]) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        module = SCENARIOS[name]
        Context.say(f"{name}: {module.SCENARIO} ...")
        clock = time.monotonic()
        try:
            found = module.run(ctx)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
            found = [report.broken(module.SCENARIO, "scenario ran to its end", error)]
        figures += found
        Context.say(f"{name}: done in {time.monotonic() - clock:.0f} s\n{report.table(found)}")
    return figures


if __name__ == "__main__":
    sys.exit(main())
