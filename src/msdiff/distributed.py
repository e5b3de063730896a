"""Data parallelism under msrun: this process's rank and world size, sharding, gradient averaging, main-rank writes.

`msrun --worker_num N --local_worker_num M script.py` starts the script in every worker (MS_ROLE=MS_WORKER) and
once as the scheduler (MS_ROLE=MS_SCHED), whose `mindspore.communication.init()` serves the cluster and never
returns to the script. `world()` joins the cluster in a worker and is World(rank=0, size=1) in a plain process, so
the same code runs with and without msrun. Collectives use only sum all-reduces of float32 (all MindSpore's CPU
backend offers; Ascend and GPU have them too).
"""
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel workers: rank in [0, size)."""

    rank: int = 0
    size: int = 1

    def __post_init__(self):
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"a world needs size >= 1 and 0 <= rank < size; got rank {self.rank}, size {self.size}")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one rank that writes checkpoints and shared files."""
        return self.rank == 0


def launched() -> bool:
    """True in a process started by msrun (it sets MS_ROLE)."""
    return bool(os.environ.get("MS_ROLE"))


@lru_cache(maxsize=1)
def world() -> World:
    """Join msrun's cluster (once per process) and return its rank and size; World(0, 1) without msrun."""
    if not launched():
        return World()
    from mindspore.communication import get_group_size, get_rank, init

    init()
    return World(get_rank(), get_group_size())


def _resolve(w: Optional[World]) -> World:
    return world() if w is None else w


def shard(items: Sequence, w: Optional[World] = None) -> list:
    """Rank r's share of items: those at positions r, r + N, r + 2N, ... (each on exactly one rank, every run alike)."""
    w = _resolve(w)
    return list(items)[w.rank::w.size]


def batch_share(batch_size: int, w: Optional[World] = None) -> slice:
    """Rank r's contiguous rows of a global batch of batch_size (ValueError unless the world size divides it)."""
    w = _resolve(w)
    if batch_size % w.size:
        raise ValueError(f"the global batch size {batch_size} must be a multiple of the number of workers {w.size}")
    local = batch_size // w.size
    return slice(w.rank * local, (w.rank + 1) * local)


def _flat_sum(tensors: tuple) -> tuple:
    """Sum each float32 tensor over all ranks with one all-reduce of their concatenation (PyNative)."""
    flat = mops.AllReduce()(mops.concat([t.astype(ms.float32).reshape(-1) for t in tensors]))
    ends = np.cumsum([int(np.prod(t.shape)) for t in tensors])
    return tuple(flat[int(e - np.prod(t.shape)):int(e)].reshape(t.shape) for t, e in zip(tensors, ends))


_mean_one = mops.MultitypeFuncGraph("mean_over_ranks")


@_mean_one.register("Number", "Function", "Tensor")
def _mean_tensor(size, reduce, tensor):
    return reduce(tensor) / size


class MeanOverRanks(nn.Cell):
    """Average a tuple of tensors (loss, gradients) over all ranks: a sum all-reduce each, divided by N.

    The identity for a single rank; compiles under mindspore.jit for nets of any depth (a HyperMap, not a loop).
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.reduce = mops.AllReduce() if size > 1 else None
        self.map = mops.HyperMap()

    def construct(self, tensors):
        if self.size == 1:
            return tensors
        return self.map(mops.partial(_mean_one, self.size, self.reduce), tensors)


def sum_over_ranks(values: Sequence[float], w: Optional[World] = None) -> List[float]:
    """The element-wise sum of a few float32 values over all ranks (every rank must call it; PyNative)."""
    w = _resolve(w)
    x = Tensor(np.asarray(values, np.float32).reshape(-1))
    if w.size > 1:
        x = mops.AllReduce()(x)
    return [float(v) for v in x.asnumpy()]


def broadcast_from_main(params: Sequence[Parameter], w: Optional[World] = None) -> None:
    """Overwrite every rank's parameters with rank 0's (a sum all-reduce of rank 0's values and zeros: exact)."""
    w = _resolve(w)
    if w.size == 1 or not params:
        return
    values = tuple(p.value() if w.is_main else mops.zeros_like(p.value()) for p in params)
    for p, v in zip(params, _flat_sum(values)):
        p.set_data(v.astype(p.dtype))


def check_same(value: int, what: str, w: Optional[World] = None) -> None:
    """ValueError on every rank unless all ranks hold the same integer value (below 2**24) of `what`."""
    w = _resolve(w)
    if w.size == 1:
        return
    main_value = sum_over_ranks([value if w.is_main else 0], w)[0]
    mismatches = sum_over_ranks([float(main_value != value)], w)[0]
    if mismatches:
        raise ValueError(f"{what} differs between ranks (rank {w.rank}: {value}, rank 0: {int(main_value)}); "
                         f"the ranks must see the same files (a folder all nodes share)")


def barrier(w: Optional[World] = None) -> None:
    """Wait until every rank reaches this call."""
    sum_over_ranks([0.0], w)


def write_atomically(path: "str | Path", write: Callable[[Path], None]) -> Path:
    """Call write(temporary path beside `path`), then rename it to `path`: a killed writer leaves no half file.

    The temporary name keeps the suffix (".NAME.part.png"), so writers that pick a format by suffix still can.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.part{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
