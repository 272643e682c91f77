"""A Jupyter kernel for the notebook tests that surely runs this venv's Python."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def kernel_path(folder: Path) -> str:
    """Write a ``python3`` kernelspec running ``sys.executable`` under ``folder``.

    Put the result first in ``JUPYTER_PATH``: it then wins over any other
    ``python3`` kernel (a user's, or the system's) for nbclient and Voilà alike.
    """
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (glowlab tests)", "language": "python",
    }))
    return str(folder)
