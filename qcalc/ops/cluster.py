"""`--dask ADDRESS`: a run's tensors computed on an existing Dask distributed cluster.

Each tensor is one task: the worker runs the very function a local run runs for it (with
its own threads, reading the inputs by path: the workers must see the same files, e.g. a
shared filesystem), and the client takes the results in the run's order, so outputs are
byte-identical to the local run's. Dask retries a task whose worker died; an error a task
raises (an unreadable input, NaN values) comes back as the same exception, one line as
locally. `distributed` is imported only here, only when --dask is given
(`pip install 'qcalc[dask]'`).

A large tensor under the min-max analyzer is split into row ranges of about SPLIT_BYTES,
one task each, whose statistics the client joins (`CountedMinMax.joined`) before finishing
the encoding as a local run does; its --metrics pass is then one more task. The histogram
analyzers keep a tensor in one task.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, Sequence

from qcalc.core import parallel
from qcalc.core.tensor import Progress
from qcalc.errors import SpecError

CONNECT_TIMEOUT = "10s"
RETRIES = 2  # a task whose worker died runs again on another, this many times
SPLIT_BYTES = 64 << 20  # min-max tensors larger than this go out in row ranges of this size


@contextlib.contextmanager
def connected(address: Optional[str]) -> Iterator[Any]:
    """A distributed.Client of the cluster at `address` for the block (None: no cluster).
    SpecError (one line) when the extra is not installed or the scheduler does not answer."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise SpecError("--dask needs Dask's distributed: pip install 'qcalc[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise SpecError(f"--dask {address}: cannot reach the scheduler ({error})") from None
    try:
        yield client
    finally:
        client.close()


def run_task(task: Callable, *args: Any) -> Any:
    """What a worker runs: `task(*args)` on every core the worker has."""
    with parallel.using(None):
        return task(*args)


def each_tensor(
    client: Any,
    local: Callable[[Any], Any],
    items: Sequence[Any],
    remote: Callable[[Any], tuple],
    progress: Progress,
    nbytes: Callable[[Any], int],
    split: Optional[Callable[[Any], Optional[tuple[list[tuple], Callable]]]] = None,
) -> Iterator[Any]:
    """`local(item)` for each item, in item order, as `parallel.each_tensor` gives them; with a
    `client`, each item's task `remote(item)` = (function, arguments...) runs on the cluster
    instead (all submitted at once: the scheduler spreads them), and `progress` hears of
    each tensor as its result arrives, in order. `split(item)`, when it gives (tasks,
    combine), runs the item as several tasks and `combine(their results)` on the client."""
    if client is None:
        return parallel.each_tensor(local, items)
    return _on_cluster(client, items, remote, progress, nbytes, split)


def _on_cluster(client, items, remote, progress, nbytes, split) -> Iterator[Any]:
    def submit(task: tuple):
        return client.submit(run_task, *task, retries=RETRIES, pure=False)

    plans = []
    for item in items:
        parts = split(item) if split is not None else None
        if parts is None:
            plans.append(([submit(remote(item))], None))
        else:
            tasks, combine = parts
            plans.append(([submit(task) for task in tasks], combine))
    try:
        for (futures, combine), item in zip(plans, items):
            results = [future.result() for future in futures]  # a task's error raises here
            result = results[0] if combine is None else combine(results)
            progress.advance(nbytes(item))
            progress.tensor_done()
            yield result
    finally:
        client.cancel([future for futures, _ in plans for future in futures])
