"""Threads for the passes over data (`--jobs`), with results that do not depend on them.

`using(jobs)` gives a run its threads. Inside it, `each_tensor(fn, tensors)` works on
several tensors at once and `ordered(fn, chunks)` maps a pass over a tensor's chunks (numpy
and the compiled kernels release the GIL). Both run at most a few items ahead of their
consumer (memory stays bounded) and return results in item order, so every reduction merges
them in the same order whatever the thread count: outputs are byte-identical for every
--jobs. Outside `using`, everything runs on the calling thread.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")

AHEAD_PER_THREAD = 2  # items submitted ahead of the consumer, per thread


class _Pools:
    """A run's threads: `tensors` run one tensor each, `chunks` the chunk passes. Two pools,
    so that a tensor waiting for its chunks never holds a thread its chunks need."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.tensors = ThreadPoolExecutor(jobs, thread_name_prefix="qcalc-tensor")
        self.chunks = ThreadPoolExecutor(jobs, thread_name_prefix="qcalc-chunk")

    def close(self) -> None:
        # The chunk pool refuses new work first, so that a tensor still running (after an
        # error or Ctrl-C elsewhere) stops at its next chunk instead of finishing.
        self.chunks.shutdown(wait=False, cancel_futures=True)
        self.tensors.shutdown(wait=True, cancel_futures=True)
        self.chunks.shutdown(wait=True)


_pools: contextvars.ContextVar[Optional[_Pools]] = contextvars.ContextVar(
    "qcalc_pools", default=None
)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def using(jobs: Optional[int]) -> Iterator[None]:
    """Run the passes inside the block on `jobs` threads (None: every available core; 1: the
    calling thread only); a block inside another keeps the outer threads. On leaving, work
    not yet started is dropped (an error or Ctrl-C does not wait for the other tensors)."""
    jobs = available_cores() if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if jobs == 1 or _pools.get() is not None:
        yield
        return
    pools = _Pools(jobs)
    token = _pools.set(pools)
    try:
        yield
    finally:
        _pools.reset(token)
        pools.close()


def jobs() -> int:
    """The current run's thread count (1 outside `using`)."""
    pools = _pools.get()
    return 1 if pools is None else pools.jobs


def each_tensor(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """`fn(item)` for each tensor (or group of batches), in item order, several tensors at a
    time on the run's threads; their chunk passes share the run's chunk threads."""
    pools = _pools.get()
    if pools is None:
        return map(fn, items)
    context = contextvars.copy_context()  # the threads see this run's pools
    return _in_order(pools.tensors, lambda item: context.copy().run(fn, item), items, pools.jobs)


def ordered(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """`fn(item)` for each chunk, in item order, computed on the run's chunk threads."""
    pools = _pools.get()
    if pools is None:
        return map(fn, items)
    return _in_order(pools.chunks, fn, items, pools.jobs)


def _in_order(pool: ThreadPoolExecutor, fn, items, jobs: int) -> Iterator:
    ahead = AHEAD_PER_THREAD * jobs
    pending: collections.deque[Future] = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # the consumer stopped early (an error): what has not started is not needed
        for future in pending:
            future.cancel()
