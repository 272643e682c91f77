"""Tube dependencies: a tube waits while the tubes it depends on still have work.

Two sources: glow's JSON file (``{"foo": ["bar"]}``, re-read when it changes)
and the ``after`` field that jobs carry, learned as the listener meets them.
"Work" is a ready, delayed or reserved job: buried jobs do not block, and
dependencies are not transitive (``a`` after ``b`` after ``c`` lets ``a`` run
while only ``c`` has work).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable, Iterable, Mapping

from .errors import ConfigurationError, InvalidJobError
from .job import check_tube

log = logging.getLogger("glowlab")

PENDING = ("current-jobs-ready", "current-jobs-delayed", "current-jobs-reserved")
WAITING = ("current-jobs-ready", "current-jobs-delayed")

StatsTube = Callable[[str], "Mapping | None"]


def load(path: str) -> dict[str, frozenset[str]]:
    """Parse a glow dependency file, or say exactly what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigurationError(f"cannot read dependency file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigurationError(f"dependency file {path} is not valid JSON: {exc}") from None
    return parse(data, f"dependency file {path}")


def parse(data: object, what: str = "dependencies") -> dict[str, frozenset[str]]:
    """Check the decoded JSON of a dependency file (pure)."""
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()
    ):
        raise ConfigurationError(
            f'{what} must map tubes to lists of tubes, e.g. {{"foo": ["bar"]}}'
        )
    try:
        return {check_tube(k): frozenset(check_tube(t) for t in v) for k, v in data.items()}
    except InvalidJobError as exc:
        raise ConfigurationError(f"{what}: {exc}") from None


class Dependencies:
    """What each tube waits for; the queue is asked through a ``stats_tube`` callable."""

    def __init__(self, path: str | None = None):
        self._path = path
        self._version: tuple | None = None
        self._from_file: dict[str, frozenset[str]] = {}
        self._learned: dict[str, frozenset[str]] = {}
        if path:
            self._from_file = load(path)  # a broken file at start is the user's to fix now
            self._version = _version(path)

    def refresh(self) -> None:
        """Re-read the file if it changed; a broken edit keeps the last good version."""
        if not self._path:
            return
        version = _version(self._path)
        if version == self._version:
            return
        self._version = version
        if version is None:
            log.warning("dependency file %s is gone; keeping the dependencies read before", self._path)
            return
        try:
            self._from_file = load(self._path)
            log.info("dependencies from %s: %s", self._path, _describe(self._from_file))
        except ConfigurationError as exc:
            log.warning("%s; keeping the previous dependencies", exc)

    def learn(self, tube: str, after: Iterable[str]) -> None:
        """Remember that jobs of ``tube`` wait for ``after`` (from a job's own field)."""
        after = frozenset(after) - {tube}
        if after - self._learned.get(tube, frozenset()):
            self._learned[tube] = self._learned.get(tube, frozenset()) | after

    def forget_finished(self, stats_tube: StatsTube) -> None:
        """Forget what was learned for tubes with nothing left waiting to start."""
        for tube in list(self._learned):
            if not _any(stats_tube(tube), WAITING):
                del self._learned[tube]

    def of(self, tube: str) -> frozenset[str]:
        return (self._from_file.get(tube, frozenset()) | self._learned.get(tube, frozenset())) - {tube}

    @property
    def any(self) -> bool:
        return bool(self._from_file or self._learned)

    def blocked(self, tube: str, stats_tube: StatsTube, extra: Iterable[str] = ()) -> bool:
        """True while a tube ``tube`` depends on (or one of ``extra``) has pending jobs."""
        return any(_any(stats_tube(dep), PENDING) for dep in self.of(tube) | (set(extra) - {tube}))

    def blocked_tubes(self, tubes: Iterable[str], stats_tube: StatsTube) -> set[str]:
        """The ``tubes`` that must wait now, asking about each dependency once."""
        asked: dict[str, bool] = {}

        def pending(dep: str) -> bool:
            if dep not in asked:
                asked[dep] = _any(stats_tube(dep), PENDING)
            return asked[dep]

        return {t for t in tubes if any(pending(dep) for dep in sorted(self.of(t)))}


def _version(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _any(stats: Mapping | None, keys: tuple[str, ...]) -> bool:
    return bool(stats) and any(int(stats.get(key, 0)) for key in keys)


def _describe(deps: Mapping[str, frozenset[str]]) -> str:
    return "; ".join(f"{t} after {', '.join(sorted(d))}" for t, d in sorted(deps.items())) or "none"
