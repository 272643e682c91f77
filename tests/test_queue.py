"""A listener's settling round trip: delete the finished job and reserve the next at once."""

from __future__ import annotations

import pytest

from glowlab.cluster import Beanstalkd
from glowlab.errors import QueueUnreachableError
from glowlab.queue import Queue


def test_delete_and_reserve_in_one_round_trip(queue: Queue, tube: str) -> None:
    first, second = (queue.put(tube, body) for body in (b"one", b"two"))
    queue.watch_only([tube])
    assert queue.reserve(0).id == first
    deleted, reserved = queue.delete_and_reserve(first, 0)
    assert deleted and reserved == (second, b"two")
    assert queue.stats_job(first) is None, "the first job is gone"
    assert queue.stats_job(second)["state"] == "reserved"
    assert queue.delete_and_reserve(second, 0) == (True, None), "nothing left: the reserve times out"
    assert queue.stats_tube(tube)["cmd-delete"] == 2


def test_deleting_a_job_that_is_gone_says_so_and_still_reserves(queue: Queue, tube: str) -> None:
    other = Queue(queue.address)
    gone = queue.put(tube, b"gone")
    other.delete(gone)
    nxt = queue.put(tube, b"next")
    queue.watch_only([tube])
    assert queue.delete_and_reserve(gone, 0) == (False, (nxt, b"next"))
    other.close()


def test_a_server_that_went_away_is_unreachable(own_server: Beanstalkd, tube: str) -> None:
    queue = Queue(own_server.address)
    job = queue.put(tube, b"x")
    queue.watch_only([tube])
    assert queue.reserve(0).id == job
    own_server.stop()
    with pytest.raises(QueueUnreachableError, match=own_server.address):
        queue.delete_and_reserve(job, 0)
    queue.close()
