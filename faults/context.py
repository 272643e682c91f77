"""How big the campaign is, and what every scenario is handed: a folder, a seeded RNG, a voice."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

from .world import World


@dataclass(frozen=True)
class Sizes:
    """The size of each scenario: ``full`` for the figures, ``quick`` for CI."""

    quick: bool
    listeners: int
    kill_jobs: int
    kills: int
    broker_jobs: int
    broker_restarts: int
    broker_downtime: float
    cut_ttrs: tuple[int, ...]
    """TTRs of the network cut's job: one cut each."""
    collector_jobs: int
    collector_kills: int
    smtp_jobs: int
    """Failing jobs per SMTP server (as many succeeding ones run beside them)."""
    smtp_delay: float
    chaos_seconds: float
    chaos_wave: int
    chaos_wave_every: float
    chaos_restarts: int
    chaos_cuts: int

    @classmethod
    def full(cls) -> "Sizes":
        return cls(quick=False, listeners=4, kill_jobs=1000, kills=20, broker_jobs=1000,
                   broker_restarts=3, broker_downtime=3.0, cut_ttrs=(6, 20), collector_jobs=1000,
                   collector_kills=20, smtp_jobs=20, smtp_delay=3.0, chaos_seconds=300.0,
                   chaos_wave=30, chaos_wave_every=10.0, chaos_restarts=3, chaos_cuts=3)

    @classmethod
    def small(cls) -> "Sizes":
        return cls(quick=True, listeners=4, kill_jobs=200, kills=5, broker_jobs=200,
                   broker_restarts=1, broker_downtime=1.0, cut_ttrs=(4,), collector_jobs=200,
                   collector_kills=6, smtp_jobs=5, smtp_delay=2.0, chaos_seconds=40.0,
                   chaos_wave=25, chaos_wave_every=8.0, chaos_restarts=1, chaos_cuts=1)


class Context:
    """What a scenario gets: where to put its world, how big to be, a seeded RNG."""

    def __init__(self, root: Path, sizes: Sizes, seed: int):
        self.root = root
        self.sizes = sizes
        self.rng = random.Random(seed)

    def world(self, name: str, *, host: str = "127.0.0.1") -> World:
        return World(self.root, name, host=host)

    @staticmethod
    def say(text: str) -> None:
        print(f"faults: {text}", file=sys.stderr, flush=True)
