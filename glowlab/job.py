"""The job record: what to run, where, and how beanstalkd should schedule it.

Pure functions only: validation, parsing of the seed's JSON and the wire
encoding. Nothing here touches a socket or a process.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shlex
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence  # not typing's: its isinstance checks are slow
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable

from .errors import GlowlabWarning, InvalidJobError

if TYPE_CHECKING:
    from .signing import Keyring

SIG_KEY = "sig"
"""The member a signed body carries its signature in (see signing.py)."""
MAX_PRI = 2**32 - 1
MAX_SECONDS = 2**32 - 1
DEFAULT_TTR = 60
_TUBE_RE = re.compile(r"[A-Za-z0-9+/;.$_()-]{1,200}")
_TUBE_RULE = "1-200 characters of A-Z a-z 0-9 - + / ; . $ _ ( ), not starting with '-'"


def _compact(ensure_ascii: bool) -> Callable[[Any], str]:
    """Compact JSON of plain data, with the encoder made once.

    ``json.dumps`` builds an encoder on every call, and even a kept
    ``JSONEncoder`` builds its C encoder on every ``encode``: a third of the
    cost of a small body. Job records hold no cycles, so none is looked for.
    """
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=ensure_ascii)
    make = getattr(json.encoder, "c_make_encoder", None)  # None without CPython's accelerator
    if make is None:
        return encoder.encode
    encode = make(None, encoder.default,
                  json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring,
                  None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_COMPACT = _compact(ensure_ascii=False)
_COMPACT_ASCII = _compact(ensure_ascii=True)


def new_id() -> str:
    """A fresh job id: 32 random hex digits (uuid4's randomness, without its cost)."""
    return os.urandom(16).hex()


def new_ids(count: int) -> list[str]:
    """``count`` fresh job ids: one random 80-bit prefix, then a 48-bit sequence number.

    One read of the OS's random source, not one per job; and the ids of a batch
    sort in the order they were made, which keeps the journal's indexes, keyed
    by job id, growing at one end instead of everywhere.
    """
    prefix = os.urandom(10).hex()
    return [f"{prefix}{i:012x}" for i in range(count)]


def check_tube(name: Any, *, what: str = "tube") -> str:
    """Return ``name`` if beanstalkd accepts it as a tube name, else raise."""
    if not isinstance(name, str) or not _TUBE_RE.fullmatch(name) or name.startswith("-"):
        raise InvalidJobError(f"{what} {name!r} is not a valid tube name ({_TUBE_RULE})", field=what)
    return name


class Job:
    """One command to run on a listener; immutable, every field checked when made.

    ``out`` receives stdout and stderr together; ``stdout``/``stderr`` override
    it per stream. ``pri`` runs smaller first; ``delay``, ``ttr`` and
    ``timeout`` are seconds; ``env`` is added to the listener's environment.
    ``id`` is made when not given.
    """

    cmd: str
    tube: str
    args: tuple[str, ...]
    workdir: str
    out: str
    stdout: str | None
    stderr: str | None
    mailto: tuple[str, ...]
    pri: int
    delay: int
    ttr: int
    timeout: float | None
    retries: int
    env: dict[str, str]
    after: tuple[str, ...]
    results: str | None
    id: str

    # A plain class, not a dataclass: importing dataclasses (and inspect with it)
    # cost a quarter of a whole ``glowlab submit``. The signature is the one list
    # of fields and their defaults (see _FIELDS).
    def __init__(self, cmd: str, tube: str, args: Sequence[str] | str = (), workdir: str = "/tmp",
                 out: str = "/dev/null", stdout: str | None = None, stderr: str | None = None,
                 mailto: Sequence[str] | str = (), pri: int = 0, delay: int = 0,
                 ttr: int = DEFAULT_TTR, timeout: float | None = None, retries: int = 0,
                 env: Mapping[str, str] | None = None, after: Sequence[str] | str = (),
                 results: str | None = None, id: str | None = None) -> None:
        values = locals()  # the arguments by name, in signature order
        del values["self"]
        values["env"] = {} if env is None else env
        values["id"] = new_id() if id is None else id
        self.__dict__.update(_normalise(values))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Job cannot be changed; use job.with_changes({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Job cannot be changed; use job.with_changes({name}=...)")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Job:
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # env is a dict: equal jobs could not hash alike

    def __repr__(self) -> str:
        return f"Job({', '.join(f'{name}={value!r}' for name, value in self.__dict__.items())})"

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
        return {name: _jsonable(value) for name, value in self._wire().items()}

    def _wire(self) -> dict[str, Any]:
        """The record as it is encoded: like :meth:`to_dict`, tuples left as tuples."""
        values = self.__dict__
        return {name: values[name] for name, default in _WIRE
                if default is _MISSING or values[name] != default}

    def encode(self, keyring: "Keyring | None" = None) -> bytes:
        """The job body as queued in beanstalkd: compact JSON, signed when a keyring is given."""
        record = self._wire() if keyring is None else keyring.sign(self.to_dict())
        try:
            return _COMPACT(record).encode()
        except UnicodeEncodeError:
            # Arguments that were not UTF-8 on the command line arrive as lone surrogates;
            # \u escapes carry them, and the listener turns them back into the same bytes.
            return _COMPACT_ASCII(record).encode()

    def size_bound(self) -> int:
        """An upper bound of ``len(self.encode(keyring))``, cheaper than encoding.

        Each character of text counts 12 bytes (its longest JSON form, a surrogate
        pair escaped), each string 4 more (quotes, separators), and 1 KiB covers
        the keys, the numbers and a signature.
        """
        texts = [self.cmd, self.tube, self.workdir, self.out, self.stdout or "", self.stderr or "",
                 self.results or "", self.id, *self.args, *self.mailto, *self.after,
                 *self.env, *self.env.values()]
        return 12 * sum(map(len, texts)) + 4 * len(texts) + 1024

    def with_changes(self, **changes: Any) -> "Job":
        """A copy with some fields changed; only the changed fields are checked again."""
        values = self.__dict__.copy()
        for name, value in changes.items():
            if name not in _CHECKS:
                raise TypeError(f"Job has no field {name!r}")
            values[name] = _CHECKS[name](value)
        job = object.__new__(Job)
        object.__setattr__(job, "__dict__", values)
        return job


_MISSING = object()


def _fields(function: Callable[..., None]) -> dict[str, Any]:
    """A function's parameters after ``self`` and their defaults (``_MISSING`` for none)."""
    code = function.__code__
    names = code.co_varnames[1:code.co_argcount]
    defaults = function.__defaults__ or ()
    return dict(zip(names, (_MISSING,) * (len(names) - len(defaults)) + defaults))


_FIELDS = _fields(Job.__init__)
"""Job's fields in order, with their defaults; ``env`` and ``id`` are made per job."""
_ALWAYS = {"cmd", "tube", "id"}
_WIRE = [(name, _MISSING if name in _ALWAYS else ({} if name == "env" else default))
         for name, default in _FIELDS.items()]
KNOWN_KEYS = frozenset(_FIELDS)
_ACCEPTED_KEYS = KNOWN_KEYS | {SIG_KEY}


_DEFAULTS = {name: default for name, default in _FIELDS.items() if name not in _ALWAYS and name != "env"}
"""Defaults are valid: a value that *is* its default needs no check."""


def _jsonable(value: Any) -> Any:
    # fields hold canonical types (see _CHECKS): tuples become lists, env a plain dict
    if type(value) is tuple:
        return list(value)
    if type(value) is dict:
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


def _normalise(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every field checked and converted to its canonical type."""
    checked = {}
    for name, check in _CHECKS.items():
        value = values[name]
        checked[name] = value if value is _DEFAULTS.get(name, _MISSING) else check(value)
    return checked


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
    try:  # the common case, all strings without NUL, checked in one pass (join wants strings)
        if "\0" not in "".join(value):
            return tuple(value)
    except TypeError:
        pass
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


_BLANK = Job(cmd="-", tube="default", id="-")
"""Every field at its default: jobs read from records are made from it."""


def from_dict(record: Any) -> Job:
    """A job from a JSON object as glow or glowlab wrote it; unknown keys warn."""
    if not isinstance(record, Mapping):
        raise InvalidJobError(f"a job must be a JSON object, not {type(record).__name__}")
    for key in ("cmd", "tube"):
        if record.get(key) is None:  # null counts as missing: it would reach Job() as no argument
            raise InvalidJobError(f"{key} is required", field=key)
    if not record.keys() <= _ACCEPTED_KEYS:
        unknown = sorted(set(record) - _ACCEPTED_KEYS, key=str)
        # a warning, not a log line: the caller can fix it, and a batch of
        # like records says it once
        warnings.warn(f"ignoring unknown job keys: {', '.join(map(str, unknown))}",
                      GlowlabWarning, stacklevel=2)
    known = {k: v for k, v in record.items() if k in KNOWN_KEYS and v is not None}
    if "id" not in known:
        known["id"] = new_id()
    return _BLANK.with_changes(**known)  # fields left out keep their defaults: only given ones are checked


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
    with gc_paused():
        records = _records(text.strip())
        ids = new_ids(len(records))  # at once: one system call, not one per job
        jobs = []
        for index, record in enumerate(records):
            try:
                if isinstance(record, Mapping):
                    record = {"id": ids[index], **(defaults or {}), **record}
                jobs.append(from_dict(record))
            except InvalidJobError as exc:
                raise exc.at(index) from None
    return jobs


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many small objects are made.

    Jobs hold no reference cycles; with a hundred thousand of them alive, the
    collector's passes over the growing heap cost a tenth of the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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

