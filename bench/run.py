"""Run glowlab's benchmarks and report them: ``python -m bench.run [--quick] [--only NAME]``.

Every figure is measured beside its baseline in the same run, on a private
beanstalkd, alternating between contenders; medians are reported. The full
run writes bench/results.json, the figures section of docs/performance.md and
docs/img/performance.png; ``--quick`` is a smoke run that writes only what
``--out``, ``--docs`` and ``--plot`` name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from . import collecting, dispatch, idle, report, submitting
from .common import ROOT, Figure, Sizes, Workspace, machine

BENCHMARKS: dict[str, Callable[[Workspace, Sizes], list[Figure]]] = {
    "batch": submitting.batch_submit,
    "one": submitting.one_submit,
    "body": submitting.body_size,
    "dispatch": dispatch.throughput,
    "pickup": dispatch.pickup,
    "idle": idle.idle,
    "collect": collecting.collect,
    "scale": dispatch.scale,
}
"""Name -> benchmark, in the order they run."""

NEEDS = ("beanstalkd", "xargs")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks the bench works")
    p.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only these (repeatable)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results.json; none with --quick)")
    p.add_argument("--docs", type=Path, help="page whose figures section to rewrite "
                                             "(default docs/performance.md; none with --quick)")
    p.add_argument("--plot", type=Path, help="plot PNG (default docs/img/performance.png; none with --quick)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: write the docs section and plot from a results file")
    args = p.parse_args(argv)
    if not args.quick and (not args.only or args.render):
        args.out = args.out or ROOT / "bench" / "results.json"
        args.docs = args.docs or ROOT / "docs" / "performance.md"
        args.plot = args.plot or ROOT / "docs" / "img" / "performance.png"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.render:
        return render(args)
    missing = [p for p in NEEDS if shutil.which(p) is None]
    if missing:
        print(f"bench: missing {', '.join(missing)}; run 'make bench' (it installs them)", file=sys.stderr)
        return 2
    sizes = Sizes.smoke() if args.quick else Sizes.full()
    started, host = time.time(), machine()
    ws = Workspace()
    figures: list[Figure] = []
    try:
        for name in args.only or BENCHMARKS:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            clock = time.perf_counter()
            found = BENCHMARKS[name](ws, sizes)
            figures += found
            print(report.table(found).split("\n", 1)[1] + f"   ({time.perf_counter() - clock:.0f} s)",
                  file=sys.stderr, flush=True)
    finally:
        ws.close()
    command = "make bench" + (" QUICK=1" if args.quick else "")
    info = report.info(command, host, dataclasses.asdict(sizes), started)
    print(report.table(figures))
    _write(args, figures, info)
    return 0


def render(args: argparse.Namespace) -> int:
    """Rewrite the docs section and plot from measured results (after editing bench/report.py)."""
    info = json.loads(args.render.read_text())
    figures = [Figure(**f) for f in info.pop("figures")]
    args.out = None
    print(report.table(figures))
    _write(args, figures, info)
    return 0


def _write(args: argparse.Namespace, figures: list[Figure], info: dict) -> None:
    if args.out:
        report.write_json(args.out, figures, info)
    image = None
    if args.plot:
        report.plot(args.plot, figures)
        image = (Path("img") / args.plot.name).as_posix()
    if args.docs:
        report.update_docs(args.docs, report.markdown(figures, info, image))


if __name__ == "__main__":
    sys.exit(main())
