"""The job record: what to run, where, and how beanstalkd should schedule it.

Pure functions only: validation, parsing of the seed's JSON and the wire
encoding. Nothing here touches a socket or a process.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
import uuid
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import InvalidJobError
from .signing import SIG_KEY

if TYPE_CHECKING:
    from .signing import Keyring

log = logging.getLogger("glowlab")

MAX_PRI = 2**32 - 1
MAX_SECONDS = 2**32 - 1
DEFAULT_TTR = 60
_TUBE_RE = re.compile(r"[A-Za-z0-9+/;.$_()-]{1,200}")
_TUBE_RULE = "1-200 characters of A-Z a-z 0-9 - + / ; . $ _ ( ), not starting with '-'"


def check_tube(name: Any, *, what: str = "tube") -> str:
    """Return ``name`` if beanstalkd accepts it as a tube name, else raise."""
    if not isinstance(name, str) or not _TUBE_RE.fullmatch(name) or name.startswith("-"):
        raise InvalidJobError(f"{what} {name!r} is not a valid tube name ({_TUBE_RULE})", field=what)
    return name


@dataclass(frozen=True)
class Job:
    """One command to run on a listener.

    ``out`` receives stdout and stderr together; ``stdout``/``stderr`` override
    it per stream. ``pri`` runs smaller first; ``delay``, ``ttr`` and
    ``timeout`` are seconds; ``env`` is added to the listener's environment.
    """

    cmd: str
    tube: str
    args: tuple[str, ...] = ()
    workdir: str = "/tmp"
    out: str = "/dev/null"
    stdout: str | None = None
    stderr: str | None = None
    mailto: tuple[str, ...] = ()
    pri: int = 0
    delay: int = 0
    ttr: int = DEFAULT_TTR
    timeout: float | None = None
    retries: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    results: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        for name, value in _normalise(self).items():
            object.__setattr__(self, name, value)

    @property
    def argv(self) -> list[str]:
        """The command line as the listener will execute it.

        ``glowlab`` always means the listener's own glowlab (function sweeps
        rely on it), whatever the node's PATH says.
        """
        if self.cmd == "glowlab":
            return [sys.executable, "-m", "glowlab", *self.args]
        return [self.cmd, *self.args]

    @property
    def command_line(self) -> str:
        """The command line quoted for humans and mail subjects."""
        return shlex.join([self.cmd, *self.args])

    def to_dict(self) -> dict[str, Any]:
        """The record with default values left out (the wire form)."""
        values = self.__dict__
        return {name: _jsonable(values[name]) for name, default in _WIRE
                if default is _MISSING or values[name] != default}

    def encode(self, keyring: "Keyring | None" = None) -> bytes:
        """The job body as queued in beanstalkd: compact JSON, signed when a keyring is given."""
        record = self.to_dict() if keyring is None else keyring.sign(self.to_dict())
        try:
            return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            # Arguments that were not UTF-8 on the command line arrive as lone surrogates;
            # \u escapes carry them, and the listener turns them back into the same bytes.
            return json.dumps(record, separators=(",", ":")).encode()

    def with_changes(self, **changes: Any) -> "Job":
        """A copy with some fields changed; only the changed fields are checked again."""
        job = object.__new__(Job)
        job.__dict__.update(self.__dict__)
        for name, value in changes.items():
            if name not in _CHECKS:
                raise TypeError(f"Job has no field {name!r}")
            object.__setattr__(job, name, _CHECKS[name](value))
        return job


_MISSING = object()
_ALWAYS = {"cmd", "tube", "id"}
_WIRE = [(f.name, _MISSING if f.name in _ALWAYS else ({} if f.name == "env" else f.default))
         for f in fields(Job)]
KNOWN_KEYS = frozenset(f.name for f in fields(Job))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "cmd": lambda v: _text(v, "cmd", required=True),
    "tube": check_tube,
    "args": lambda v: _args(v),
    "workdir": lambda v: _text(v, "workdir", required=True),
    "out": lambda v: _text(v, "out", required=True),
    "stdout": lambda v: _optional_text(v, "stdout"),
    "stderr": lambda v: _optional_text(v, "stderr"),
    "mailto": lambda v: _mailto(v),
    "pri": lambda v: _integer(v, "pri", 0, MAX_PRI),
    "delay": lambda v: _integer(v, "delay", 0, MAX_SECONDS),
    "ttr": lambda v: _integer(v, "ttr", 1, MAX_SECONDS),
    "timeout": lambda v: _timeout(v),
    "retries": lambda v: _integer(v, "retries", 0, 1000),
    "env": lambda v: _env(v),
    "after": lambda v: tuple(check_tube(t, what="after") for t in _names(v, "after")),
    "results": lambda v: None if v is None else check_tube(v, what="results"),
    "id": lambda v: _text(v, "id", required=True),
}
"""Each field's rule: check the value and return it in its canonical type."""


def _normalise(job: Job) -> dict[str, Any]:
    """Every field checked and converted to its canonical type."""
    return {name: check(getattr(job, name)) for name, check in _CHECKS.items()}


def _text(value: Any, name: str, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidJobError(f"{name} must be a string, not {type(value).__name__}", field=name)
    if required and not value:
        raise InvalidJobError(f"{name} must not be empty", field=name)
    if "\0" in value:
        raise InvalidJobError(f"{name} must not contain a NUL byte", field=name)
    return value


def _optional_text(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name, required=True)


def _args(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise InvalidJobError(f"args {value!r} cannot be split: {exc}", field="args") from None
    if not isinstance(value, (list, tuple)):
        raise InvalidJobError("args must be a list of strings or one string", field="args")
    return tuple(_text(a, "args") if isinstance(a, str) else _number_arg(a) for a in value)


def _number_arg(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidJobError(f"args items must be strings, not {type(value).__name__}", field="args")


def _names(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidJobError(f"{name} must be a comma-separated string or a list of strings", field=name)


def _mailto(value: Any) -> tuple[str, ...]:
    addresses = _names(value, "mailto")
    for address in addresses:
        if "@" not in address or any(c in address for c in " \r\n<>"):
            raise InvalidJobError(f"mailto {address!r} is not an e-mail address", field="mailto")
    return addresses


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """An int within [low, high]; digit strings are accepted as glow sent them."""
    number = value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        number = int(value)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int) or isinstance(number, bool):
        raise InvalidJobError(f"{name} must be a whole number, not {value!r}", field=name)
    if not low <= number <= high:
        raise InvalidJobError(f"{name} must be between {low} and {high}, not {number}", field=name)
    return number


def _timeout(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or not 0 < seconds < MAX_SECONDS:
        raise InvalidJobError(f"timeout must be a positive number of seconds, not {value!r}", field="timeout")
    return seconds


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidJobError("env must be an object of NAME: value strings", field="env")
    env = {}
    for key, val in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InvalidJobError(f"env name {key!r} is not a valid variable name", field="env")
        if not isinstance(val, (str, int, float)) or isinstance(val, bool):
            # str() would turn null or a list into a misleading value such as "None"
            raise InvalidJobError(f"env {key} must be a string or a number, not {val!r}", field="env")
        env[key] = _text(str(val), f"env {key}")
    return env


def from_dict(record: Any) -> Job:
    """A job from a JSON object as glow or glowlab wrote it; unknown keys warn."""
    if not isinstance(record, Mapping):
        raise InvalidJobError(f"a job must be a JSON object, not {type(record).__name__}")
    for key in ("cmd", "tube"):
        if record.get(key) is None:  # null counts as missing: it would reach Job() as no argument
            raise InvalidJobError(f"{key} is required", field=key)
    unknown = sorted(set(record) - KNOWN_KEYS - {SIG_KEY})
    if unknown:
        log.warning("ignoring unknown job keys: %s", ", ".join(map(str, unknown)))
    known = {k: v for k, v in record.items() if k in KNOWN_KEYS and v is not None}
    return Job(**known)


def decode(body: bytes | str, keyring: "Keyring | None" = None) -> Job:
    """The job in a queued body; raises InvalidJobError for anything malformed.

    With a keyring the signature is checked before any field is looked at.
    """
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJobError(f"body is not valid JSON: {exc}") from None
    if keyring is not None:
        record = keyring.verify(record)
    elif isinstance(record, dict):
        record.pop(SIG_KEY, None)
    return from_dict(record)


def parse_batch(text: str | bytes, defaults: Mapping[str, Any] | None = None) -> list[Job]:
    """Jobs from a JSON list, one JSON object, or JSON lines; all or nothing.

    ``defaults`` fill keys a record leaves out (command-line options)."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise InvalidJobError(f"input is not UTF-8: {exc}") from None
    records = _records(text.strip())
    jobs = []
    for index, record in enumerate(records):
        try:
            if defaults and isinstance(record, Mapping):
                record = {**defaults, **record}
            jobs.append(from_dict(record))
        except InvalidJobError as exc:
            raise exc.at(index) from None
    return jobs


def _records(text: str) -> list[Any]:
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return [_json_line(line, n) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    return data if isinstance(data, list) else [data]


def _json_line(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise InvalidJobError(
            f"input is neither a JSON list nor JSON lines: line {number}: {exc.args[0]}"
        ) from None

