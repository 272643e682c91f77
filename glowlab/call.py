"""Run a Python function as a job: ``glowlab call MODULE:FUNCTION 'JSON kwargs'``.

The listener starts a fresh process for it; the function's return value (a
dict of JSON values) is written to ``$GLOWLAB_RESULT`` and becomes result
columns. Arguments travel as JSON, never as pickle.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Callable

from .errors import GlowlabError

TARGET_HELP = "a function given as 'package.module:function'"


def is_target(text: str) -> bool:
    """True for 'pkg.mod:func' (what ``sweep`` treats as a function, not a command)."""
    module, sep, name = text.partition(":")
    return bool(sep) and all(p.isidentifier() for p in module.split(".")) and name.isidentifier()


def resolve(target: str) -> Callable[..., Any]:
    if not is_target(target):
        raise GlowlabError(f"{target!r} is not {TARGET_HELP}")
    module_name, _, name = target.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GlowlabError(f"cannot import {module_name!r} for {target}: {exc}; run listeners in a "
                           "folder (workdir) and environment where it is importable") from None
    func = getattr(module, name, None)
    if not callable(func):
        raise GlowlabError(f"{module_name} has no function {name!r}")
    return func


def call(target: str, kwargs_json: str) -> dict[str, Any]:
    """Call the function and write its result where the listener looks for it."""
    kwargs = json.loads(kwargs_json)
    result = resolve(target)(**kwargs)
    if result is None:
        result = {}
    if not isinstance(result, dict):
        result = {"result": result}
    path = os.environ.get("GLOWLAB_RESULT")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, default=str)
    return result
