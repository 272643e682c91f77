"""glowlab: a distributed batch runner for scientists, built on beanstalkd.

Public names are imported lazily, so a compute node that only listens never
loads pandas or ipywidgets.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    # jobs and queues
    "Job": "job", "connect": "queue", "Queue": "queue",
    # listening and local clusters
    "Listener": "listener", "ListenerOptions": "listener", "LocalCluster": "cluster",
    # sweeps and results
    "sweep": "sweep", "Batch": "batch", "batches": "batch",
    # outcomes
    "Outcome": "outcome", "Status": "outcome",
    # notebook display
    "dashboard": "widgets",
    # errors
    "GlowlabError": "errors", "ConfigurationError": "errors", "InvalidJobError": "errors",
    "QueueUnreachableError": "errors", "QueueError": "errors", "BeanstalkdMissingError": "errors",
}

__all__ = sorted(_PUBLIC)

# ``glowlab.sweep`` names both a function and a module. Bind the function now: the
# first ``from .sweep import ...`` anywhere would otherwise leave the module in its
# place. (sweep.py imports neither pandas nor ipywidgets.)
from .sweep import sweep  # noqa: E402, F401


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'glowlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
