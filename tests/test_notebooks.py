"""The example notebooks run top to bottom in a real kernel, and are kept without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from conftest import ROOT
from glowlab.cluster import LocalCluster
from jupyter_kernel import kernel_path

NOTEBOOKS = ROOT / "notebooks"
NAMES = ["connecting", "pipeline", "quickstart"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This venv's kernel, and a journal of the test's own."""
    monkeypatch.setenv("JUPYTER_PATH", kernel_path(tmp_path / "jupyter"))
    env = {**os.environ, "GLOWLAB_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("GLOW_SMTP_SERVER", None)
    return env


def run(name: str, cwd: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    """Execute the notebook (plus a first cell naming the kernel's Python); returns it with outputs."""
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    book.cells.insert(0, new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(book, kernel_name="python3", timeout=240,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    assert book.cells[0].outputs[0]["text"].strip() == sys.executable, "the kernel is not this venv's"
    return book


def outputs(book: nbformat.NotebookNode, code: str) -> list[dict]:
    """The outputs of the one code cell that contains ``code``."""
    [cell] = [c for c in book.cells if c.cell_type == "code" and code in c.source]
    return cell.outputs


def data(book: nbformat.NotebookNode, code: str) -> dict:
    return {k: v for o in outputs(book, code) for k, v in o.get("data", {}).items()}


def test_every_notebook_is_tested() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_kept_without_outputs(name: str) -> None:
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), \
        f"strip the outputs of notebooks/{name}.ipynb"
    assert "widgets" not in book.metadata and book.metadata.kernelspec.name == "python3"


def test_quickstart(tmp_path: Path, kernel_env: dict[str, str]) -> None:
    book = run("quickstart", tmp_path, kernel_env)
    panel = data(book, "batch = glowlab.sweep")
    assert panel[WIDGET_VIEW]["model_id"] and panel["text/plain"].startswith("batch quickstart (")
    table = data(book, "results = batch.wait")["text/html"]
    assert table.count(">done<") == 16 and ">failed<" not in table
    assert "image/png" in data(book, "import matplotlib")
    # the panel was drawn at 0 of 16; the kernel sent its thread's updates to the frontend
    [bar] = [m["state"] for m in widget_models(book) if m["model_name"] == "IntProgressModel"]
    assert bar["max"] == 16 and bar["value"] > 0


def widget_models(book: nbformat.NotebookNode) -> list[dict]:
    """The widgets' last states, as the frontend (nbclient) received them."""
    return list(book.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"].values())


def test_pipeline(tmp_path: Path, kernel_env: dict[str, str]) -> None:
    book = run("pipeline", tmp_path, kernel_env)
    panel = data(book, "prepare = glowlab.sweep")  # a Batch as the last expression
    assert panel[WIDGET_VIEW]["model_id"] and panel["text/plain"].startswith("batch solve (")
    first = data(book, "solve.results()")["text/html"]
    assert first.count(">timeout<") == 2 and first.count(">done<") == 4
    assert "2 rows queued again" in outputs(book, "print(solve.retry_failed")[0]["text"]


def test_connecting(tmp_path: Path, kernel_env: dict[str, str]) -> None:
    with LocalCluster(listeners=2) as cluster:
        book = run("connecting", tmp_path, {**kernel_env, "GLOW_QUEUE": cluster.address})
    assert data(book, "queue = glowlab.connect()")["text/plain"] == repr(cluster.address)
    board = data(book, "board = glowlab.dashboard")
    assert board[WIDGET_VIEW]["model_id"] and "listener slot(s) connected" in board["text/plain"]
    results = data(book, "results = batch.wait")["text/html"]
    assert results.count(">done<") == 8
