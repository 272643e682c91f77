"""The documentation builds, names every job field, and its examples are true of the code."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from glowlab.cluster import Beanstalkd
from glowlab.errors import InvalidJobError
from glowlab.job import Job, parse_batch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
JOBS_MD = (DOCS / "jobs.md").read_text()
PARAMETERS = inspect.signature(Job).parameters
FIELDS = list(PARAMETERS)


def field_rows(text: str) -> dict[str, list[str]]:
    """The rows of the Fields table of jobs.md: field name -> its cells."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\| \[`(\w+)`\]\(#[\w-]+\) \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for page in ("index.html", "getting-started/index.html", "jobs/index.html"):
        assert (site / page).is_file(), page


def test_every_job_field_has_a_row_and_a_section() -> None:
    rows = field_rows(JOBS_MD)
    assert sorted(rows) == sorted(FIELDS), "the Fields table of docs/jobs.md must list exactly Job's fields"
    headings = " ".join(re.findall(r"^### (.*)$", JOBS_MD, re.M))
    missing = [name for name in FIELDS if f"`{name}`" not in headings]
    assert not missing, f"no ### section in docs/jobs.md for {missing}"


def test_documented_defaults_match_the_code() -> None:
    rows = field_rows(JOBS_MD)
    for name, parameter in PARAMETERS.items():
        default = parameter.default
        if isinstance(default, (int, str)) and not isinstance(default, bool):
            assert f"`{default}`" in rows[name][1], f"default of {name} is {default!r}"


# (record, the message docs/jobs.md quotes for it)
DOCUMENTED_ERRORS = [
    ({"tube": "x"}, "cmd is required"),
    ({"cmd": "", "tube": "x"}, "cmd must not be empty"),
    ({"cmd": "ls", "tube": "x", "out": 5}, "out must be a string, not int"),
    ({"cmd": "ls", "tube": "a b"}, "tube 'a b' is not a valid tube name"),
    ({"cmd": "ls", "tube": "x", "pri": -1}, "pri must be between 0 and 4294967295, not -1"),
    ({"cmd": "ls", "tube": "x", "pri": "abc"}, "pri must be a whole number, not 'abc'"),
    ({"cmd": "ls", "tube": "x", "timeout": 0}, "timeout must be a positive number of seconds, not 0"),
    ({"cmd": "ls", "tube": "x", "args": 'a "b'}, "args 'a \"b' cannot be split: No closing quotation"),
    ({"cmd": "ls", "tube": "x", "args": {"a": 1}}, "args must be a list of strings or one string"),
    ({"cmd": "ls", "tube": "x", "args": [True]}, "args items must be strings, not bool"),
    ({"cmd": "ls", "tube": "x", "mailto": "bob"}, "mailto 'bob' is not an e-mail address"),
    ({"cmd": "ls", "tube": "x", "after": 3}, "after must be a comma-separated string or a list of strings"),
    ({"cmd": "ls", "tube": "x", "env": []}, "env must be an object of NAME: value strings"),
    ({"cmd": "ls", "tube": "x", "env": {"1A": "x"}}, "env name '1A' is not a valid variable name"),
    ({"cmd": "ls", "tube": "x", "env": {"A": None}}, "env A must be a string or a number, not None"),
    (1, "a job must be a JSON object, not int"),
]


@pytest.mark.parametrize("record,message", DOCUMENTED_ERRORS, ids=[m[:30] for _, m in DOCUMENTED_ERRORS])
def test_documented_validation_messages_are_the_real_ones(record: object, message: str) -> None:
    assert f"job 0: {message}" in JOBS_MD
    with pytest.raises(InvalidJobError) as info:
        parse_batch(__import__("json").dumps([record]))
    assert str(info.value).startswith(f"job 0: {message}")


def test_seed_string_numbers_are_accepted_as_documented() -> None:
    [job] = parse_batch('[{"cmd":"ls","tube":"foo","pri":"0","delay":"0","ttr":"120",'
                        '"retries":"2","timeout":"1.5","args":"-c \'print(1)\'"}]')
    assert (job.pri, job.delay, job.ttr, job.retries, job.timeout) == (0, 0, 120, 2, 1.5)
    assert job.args == ("-c", "print(1)")


@pytest.mark.parametrize("page", ["getting-started.md"])
def test_python_examples_run(page: str, own_server: Beanstalkd, tmp_path: Path) -> None:
    """Each ```python block of the page runs as written against a real beanstalkd."""
    blocks = python_blocks(DOCS / page)
    assert blocks
    env = {**os.environ, "GLOW_QUEUE": own_server.address}
    env.pop("GLOW_SMTP_SERVER", None)
    for number, code in enumerate(blocks):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=90)
        assert result.returncode == 0, f"block {number} of {page}:\n{code}\n{result.stderr}"
    assert "done 0 hello" in result.stdout  # the LocalCluster example saw its job finish
