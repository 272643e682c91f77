"""Collecting: outcome messages on a batch's results tube into the journal and a DataFrame."""

from __future__ import annotations

import gc
import os
import time
import uuid

from glowlab.outcome import Outcome, Status

from .common import Figure, Raw, Sizes, Workspace, alternate, beanstalkd, median


def _outcomes(batch) -> list[bytes]:
    """One outcome message per row, as a listener publishes it for a finished job."""
    now = time.time()
    return [Outcome(job_id=row.job_id, tube=row.tube, command="python sim.py", status=Status.DONE,
                    exit_code=0, started=now, finished=now + 1.5, host="node-1", listener="node-1:42",
                    stdout="pi=3.14159\n", metrics={"estimate": 3.14159}).encode()
            for row in batch.journal.rows(batch.id)]


def collect(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 7: ``Batch.collect`` until empty, then ``Batch.results()``, in records/s."""
    import pandas as pd

    from glowlab.sweep import sweep

    n = sizes.collect_records
    df = pd.DataFrame({"alpha": [i * 1e-3 for i in range(n)], "seed": range(n)})

    def run() -> float:
        with beanstalkd(ws) as server:
            os.environ["GLOWLAB_HOME"] = str(ws.path(f"home-{uuid.uuid4().hex[:8]}"))
            batch = sweep(df, "python sim.py --alpha {alpha}", tube="collect", queue=server.address)
            raw = Raw(server.address)
            raw.put_all(batch.record.results_tube, _outcomes(batch))
            raw.close()
            gc.collect()
            start = time.perf_counter()
            while batch.collect():
                pass
            results = batch.results()
            elapsed = time.perf_counter() - start
            assert (results["status"] == "done").all() and len(results) == n
            batch.queue.close()
            batch.journal.close()
            return elapsed

    times = alternate(max(1, sizes.rounds // 2), {"collect": run})["collect"]
    rate = n / median(times)
    return [Figure(
        key="collect", what=f"collecting {n:,} outcomes into the journal and a DataFrame",
        value=rate, unit="records/s", target=">= 20,000", met=rate >= 20_000, samples=times,
        limits="per record: reserve and delete (pipelined), JSON decoding, the journal insert; "
               "then results() reads every row and outcome back and builds the DataFrame.")]
