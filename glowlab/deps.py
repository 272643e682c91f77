"""Tube dependencies: a tube waits while the tubes it depends on still have work.

Two sources: glow's JSON file (``{"foo": ["bar"]}``, re-read when it changes)
and the ``after`` field that jobs carry, learned as the listener meets them.
Dependencies are not transitive and buried jobs do not block.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable, Mapping

from .errors import ConfigurationError
from .job import check_tube

log = logging.getLogger("glowlab")

PENDING = ("current-jobs-ready", "current-jobs-delayed", "current-jobs-reserved")


def load(path: str) -> dict[str, frozenset[str]]:
    """Parse a glow dependency file, or say exactly what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigurationError(f"cannot read dependency file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError(f"dependency file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()
    ):
        raise ConfigurationError(
            f'dependency file {path} must map tubes to lists of tubes, e.g. {{"foo": ["bar"]}}'
        )
    try:
        return {check_tube(k): frozenset(check_tube(t) for t in v) for k, v in data.items()}
    except Exception as exc:
        raise ConfigurationError(f"dependency file {path}: {exc}") from None


class Dependencies:
    """What each tube waits for; ``blocked`` asks the queue through ``stats_tube``."""

    def __init__(self, path: str | None = None):
        self._path = path
        self._mtime: float | None = None
        self._from_file: dict[str, frozenset[str]] = {}
        self._learned: dict[str, frozenset[str]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file if it changed; a broken edit keeps the last good version."""
        if not self._path:
            return
        try:
            mtime = os.stat(self._path).st_mtime
        except OSError:
            mtime = None
        if self._mtime is not None and mtime in (None, self._mtime):
            return
        try:
            self._from_file = load(self._path)
        except ConfigurationError as exc:
            if self._mtime is None:
                raise
            log.warning("%s; keeping the previous dependencies", exc)
        self._mtime = mtime

    def learn(self, tube: str, after: tuple[str, ...]) -> None:
        """Remember that jobs of ``tube`` wait for ``after`` (from a job's own field)."""
        if after:
            self._learned[tube] = self._learned.get(tube, frozenset()) | frozenset(after)

    def of(self, tube: str) -> frozenset[str]:
        return self._from_file.get(tube, frozenset()) | self._learned.get(tube, frozenset())

    @property
    def any(self) -> bool:
        return bool(self._from_file or self._learned)

    def blocked(self, tube: str, stats_tube: Callable[[str], Mapping | None]) -> bool:
        """True while a tube ``tube`` depends on has ready, delayed or reserved jobs."""
        return any(_pending(stats_tube(dep)) for dep in self.of(tube) if dep != tube)


def _pending(stats: Mapping | None) -> bool:
    return bool(stats) and any(stats[key] for key in PENDING)
