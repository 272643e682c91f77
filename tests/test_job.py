"""The job record: fields, the seed's JSON, validation and the wire encoding (pure, no broker)."""

from __future__ import annotations

import inspect
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from glowlab.errors import GlowlabWarning, InvalidJobError
from glowlab.job import DEFAULT_TTR, KNOWN_KEYS, MAX_PRI, Job, decode, from_dict, parse_batch

SEED_JSON = (
    '[{"cmd":"ls","pri":"0","tube":"foo","delay":"0","mailto":"example@example.com",'
    '"out":"/tmp/glow.out","workdir":"/tmp/glow"},'
    '{"cmd":"ps","pri":"1","tube":"bar","delay":"0","mailto":"example@example.com",'
    '"out":"/tmp/glow.out","workdir":"/tmp/glow"}]'
)


def invalid(record: object) -> InvalidJobError:
    """The error ``from_dict(record)`` raises (the test fails if it raises none)."""
    with pytest.raises(InvalidJobError) as info:
        from_dict(record)
    return info.value


# -- fields and defaults ------------------------------------------------------------
def test_defaults_of_every_field() -> None:
    job = Job(cmd="ls", tube="foo")
    expected = dict(cmd="ls", tube="foo", args=(), workdir="/tmp", out="/dev/null", stdout=None,
                    stderr=None, mailto=(), pri=0, delay=0, ttr=DEFAULT_TTR, timeout=None,
                    retries=0, env={}, after=(), results=None)
    actual = {name: getattr(job, name) for name in KNOWN_KEYS - {"id"}}
    assert actual == expected
    assert DEFAULT_TTR == 60
    # the class's attribute list (for readers and type checkers) names exactly the signature's fields
    assert list(Job.__annotations__) == list(inspect.signature(Job).parameters)
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert Job(cmd="ls", tube="foo").id != job.id


def test_every_field_set() -> None:
    job = from_dict({
        "cmd": "python", "tube": "sims", "args": ["run.py", 3, 0.5], "workdir": "/work",
        "out": "o.log", "stdout": "s.log", "stderr": "e.log", "mailto": "a@x.org, b@y.org",
        "pri": 7, "delay": 3, "ttr": 120, "timeout": "2.5", "retries": 2, "env": {"A": "1", "B": 2},
        "after": "prep,setup", "results": "glowlab.r1", "id": "abc",
    })
    assert job == Job(
        cmd="python", tube="sims", args=("run.py", "3", "0.5"), workdir="/work", out="o.log",
        stdout="s.log", stderr="e.log", mailto=("a@x.org", "b@y.org"), pri=7, delay=3, ttr=120,
        timeout=2.5, retries=2, env={"A": "1", "B": "2"}, after=("prep", "setup"),
        results="glowlab.r1", id="abc",
    )
    assert job.argv == ["python", "run.py", "3", "0.5"]


def test_job_is_frozen_and_with_changes_validates() -> None:
    job = Job(cmd="ls", tube="foo")
    with pytest.raises(AttributeError, match=r"use job.with_changes\(pri=...\)"):
        job.pri = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del job.tube
    with pytest.raises(TypeError, match="unhashable"):
        hash(job)
    assert job.tube == "foo" and job == Job(cmd="ls", tube="foo", id=job.id) != job.with_changes(pri=1)
    assert repr(job).startswith("Job(cmd='ls', tube='foo', args=(), workdir='/tmp'")
    assert job.with_changes(pri="5").pri == 5
    with pytest.raises(InvalidJobError):
        job.with_changes(pri=-1)


# -- the seed's JSON ------------------------------------------------------------------
def test_seed_readme_json_with_string_numbers() -> None:
    ls, ps = parse_batch(SEED_JSON)
    for job in (ls, ps):
        assert (job.delay, job.mailto, job.out, job.workdir) == (
            0, ("example@example.com",), "/tmp/glow.out", "/tmp/glow")
        assert job.args == () and job.ttr == DEFAULT_TTR
    assert (ls.cmd, ls.tube, ls.pri) == ("ls", "foo", 0)
    assert (ps.cmd, ps.tube, ps.pri) == ("ps", "bar", 1)
    assert isinstance(ls.pri, int) and isinstance(ps.delay, int)


def test_args_as_list_and_as_one_string_split_like_a_shell_without_one() -> None:
    as_string = from_dict({"cmd": "echo", "tube": "foo", "args": 'a "b c" $(x)'})
    as_list = from_dict({"cmd": "echo", "tube": "foo", "args": ["a", "b c", "$(x)"]})
    assert as_string.args == as_list.args == ("a", "b c", "$(x)")
    assert as_string.argv == ["echo", "a", "b c", "$(x)"]


def test_unknown_keys_are_ignored_with_a_warning() -> None:
    with pytest.warns(GlowlabWarning, match="ignoring unknown job keys: colour, zz"):
        job = from_dict({"cmd": "ls", "tube": "foo", "colour": "red", "zz": 1})
    assert job == Job(cmd="ls", tube="foo", id=job.id)


@pytest.mark.parametrize("trailing", ["", "\n", "\n\n"])
def test_json_lines(trailing: str) -> None:
    text = '{"cmd":"ls","tube":"a"}\n{"cmd":"ps","tube":"b","pri":"2"}' + trailing
    jobs = parse_batch(text.encode())
    assert [(j.cmd, j.tube, j.pri) for j in jobs] == [("ls", "a", 0), ("ps", "b", 2)]


def test_one_object_and_defaults_fill_gaps() -> None:
    (job,) = parse_batch('{"cmd":"ls"}', defaults={"tube": "dflt", "pri": "3"})
    assert (job.tube, job.pri) == ("dflt", 3)
    (job,) = parse_batch('{"cmd":"ls","tube":"own"}', defaults={"tube": "dflt"})
    assert job.tube == "own"


# -- invalid input ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a b", "tübe", "-lead", "x" * 201, "", 5, None])
def test_bad_tube_names(name: object) -> None:
    record = {"cmd": "ls", "tube": name}
    error = invalid(record)
    assert error.field == "tube"
    assert "tube" in str(error)


def test_longest_tube_name_is_accepted() -> None:
    assert Job(cmd="ls", tube="x" * 200).tube == "x" * 200
    assert Job(cmd="ls", tube="a-+/;.$_()9").tube == "a-+/;.$_()9"


@pytest.mark.parametrize("field,value", [
    ("pri", -1), ("pri", 2**32), ("pri", 1.5), ("pri", "high"), ("pri", True), ("pri", "1.5"),
    ("delay", -1), ("delay", "-3"), ("ttr", 0), ("retries", -1), ("timeout", 0),
    ("timeout", "soon"), ("args", 3), ("args", [None]), ("args", 'unclosed "quote'),
    ("workdir", ""), ("out", 7), ("mailto", "not-an-address"), ("env", ["A=1"]),
    ("env", {"1A": "x"}), ("env", {"A": None}), ("after", "bad tube"), ("cmd", ""),
    ("cmd", "a\0b"), ("results", "-r"),
])
def test_bad_field_values_name_the_field(field: str, value: object) -> None:
    error = invalid({"cmd": "ls", "tube": "foo", field: value})
    assert error.field == field
    assert field in str(error)


def test_pri_bounds_are_inclusive() -> None:
    assert Job(cmd="ls", tube="t", pri=MAX_PRI).pri == 2**32 - 1
    assert Job(cmd="ls", tube="t", pri=" 3 ").pri == 3


@pytest.mark.parametrize("missing", ["cmd", "tube"])
def test_missing_or_null_required_fields(missing: str) -> None:
    record = {"cmd": "ls", "tube": "foo"}
    del record[missing]
    assert invalid(record).field == missing
    assert invalid({**record, missing: None}).field == missing


@pytest.mark.parametrize("record", [[], "ls", 3, None])
def test_a_job_must_be_an_object(record: object) -> None:
    assert "JSON object" in str(invalid(record))


def test_batch_error_names_the_index_and_the_field() -> None:
    records = [{"cmd": "ls", "tube": "ok"}] * 2 + [{"cmd": "ls", "tube": "ok", "pri": "high"}]
    with pytest.raises(InvalidJobError) as info:
        parse_batch(json.dumps(records))
    assert (info.value.index, info.value.field) == (2, "pri")
    assert str(info.value).startswith("job 2: ") and "pri" in str(info.value)


def test_batch_error_for_a_non_object_names_the_index() -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_batch('[{"cmd":"ls","tube":"a"}, 1]')
    assert info.value.index == 1


def test_batch_error_in_json_lines_names_the_index() -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_batch('{"cmd":"ls","tube":"a"}\n{"cmd":"ls","tube":"a b"}\n')
    assert (info.value.index, info.value.field) == (1, "tube")


@pytest.mark.parametrize("text", ['{"cmd":', '[{"cmd":"ls","tube":"a"}', '{"cmd":"ls"}\nnot json\n'])
def test_malformed_json(text: str) -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_batch(text)
    assert "JSON" in str(info.value) and "line" in str(info.value)


def test_input_that_is_not_utf8() -> None:
    with pytest.raises(InvalidJobError, match="UTF-8"):
        parse_batch(b'[{"cmd":"\xff","tube":"a"}]')


# -- wire encoding ---------------------------------------------------------------------
def test_encode_decode_round_trip() -> None:
    full = Job(cmd="python", tube="sims", args=("x y", "é"), workdir="/w", out="o", stdout="s",
               stderr="e", mailto=("a@b.c",), pri=9, delay=2, ttr=30, timeout=1.5, retries=3,
               env={"K": "v"}, after=("prep",), results="glowlab.r")
    for job in (Job(cmd="ls", tube="foo"), full):
        assert decode(job.encode()) == job
        assert decode(job.encode().decode()) == job


def test_encoding_leaves_defaults_out_and_is_small() -> None:
    job = Job(cmd="ls", tube="foo")
    assert json.loads(job.encode()) == {"cmd": "ls", "tube": "foo", "id": job.id}
    typical = Job(cmd="python", tube="simulations", args=("sim.py", "--alpha", "0.1", "--seed", "3"),
                  workdir="/home/ana/project", out="/home/ana/project/out/run-3.log",
                  mailto=("ana@example.com",), pri=10, retries=2, timeout=3600)
    assert len(typical.encode()) < 500


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'{"cmd":"ls"}', b"\xff\xfe"])
def test_decode_rejects_malformed_bodies(body: bytes) -> None:
    with pytest.raises(InvalidJobError):
        decode(body)


# the longest JSON forms: a lone surrogate forces \u escapes, an astral character takes two
_text = st.text(st.sampled_from(["\ud800", "\U0001F600", "\x01", '"', "a", "\u00e9"]), min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)
@example(cmd="\ud800" + "\U0001F600" * 500, args=["\x01" * 300], workdir="a", out="b", env={}, timeout=None,
         signed=True)
@given(cmd=_text, args=st.lists(_text, max_size=5), workdir=_text, out=_text,
       env=st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), _text, max_size=3),
       timeout=st.one_of(st.none(), st.floats(min_value=1e-6, max_value=4e9)), signed=st.booleans())
def test_size_bound_is_never_below_the_encoded_size(cmd, args, workdir, out, env, timeout, signed) -> None:
    """Queue.submit_many checks sizes with the bound and encodes later: it must never be short."""
    from glowlab.signing import Keyring

    job = Job(cmd=cmd, tube="t", args=tuple(args), workdir=workdir, out=out, env=env, timeout=timeout,
              pri=MAX_PRI, delay=MAX_PRI, ttr=MAX_PRI, retries=1000, results="glowlab.results.x")
    keyring = Keyring((b"secret",), ttl=3600) if signed else None
    assert len(job.encode(keyring)) <= job.size_bound()
