"""MPI and device helpers: who am I, which device, how to fail together.

Scripts run under ``mpiexec -n N`` or as a plain ``python`` process (one rank).
Errors follow one rule: problems a user can cause are detected at *agreement
points* (:func:`agree`), where every rank learns of any rank's error, rank 0
prints it once and every rank exits with status 1. Anything else that escapes
(a bug, an out-of-memory) is printed with its traceback by the failing rank,
which then aborts the whole MPI job, so no rank waits forever. SIGINT and
SIGTERM become exceptions (:class:`KeyboardInterrupt`, :class:`Terminated`), so
the cleanups on their way (temporary files, staging folders, claims) run before
the exit with status 130 or 143.

Scripts written for the paper's code call its ``setup_dist``, ``dev`` and
``load_state_dict``; they are kept here, at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from .checkpoint import model_state_from, read_checkpoint
from .errors import UserError

T = TypeVar("T")


class _SingleProcess:
    """Stands in for ``MPI.COMM_WORLD`` when mpi4py or an MPI runtime is missing."""

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 1

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather(self, obj: Any) -> list:
        return [obj]

    def gather(self, obj: Any, root: int = 0) -> list:
        return [obj]

    def Barrier(self) -> None:
        pass

    def Abort(self, code: int = 1) -> None:
        os._exit(code)


def _world():
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError):
        return _SingleProcess()
    return MPI.COMM_WORLD


COMM = _world()


def rank() -> int:
    return COMM.Get_rank()


def world_size() -> int:
    return COMM.Get_size()


_device: torch.device | None = None
_ranks_on_node = 1


def _node_rank_and_size() -> tuple[int, int]:
    """Rank among the processes on this node, and their number. A collective call: every rank must make it."""
    if world_size() == 1:
        return 0, 1
    from mpi4py import MPI

    node = COMM.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank(), node.Get_size()
    finally:
        node.Free()


def setup_device() -> torch.device:
    """Choose this rank's device once: GPU ``local rank % visible GPUs``, or the CPU when there is none.

    A collective call at start-up (:func:`run_main` makes it on every rank
    before the script's ``main``): the local rank needs every rank of the
    node. Later calls, and :func:`dev`, return the stored choice. A GPU
    becomes the current CUDA device, so NCCL, pinned memory and generators
    created without an index use it. On the CPU, unless OMP_NUM_THREADS is set,
    each rank takes an equal share of the cores it may run on.
    """
    global _device, _ranks_on_node
    local, _ranks_on_node = _node_rank_and_size()
    if _device is None:
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            _device = torch.device("cuda", local % torch.cuda.device_count())
            torch.cuda.set_device(_device)
        else:
            _device = torch.device("cpu")
            if "OMP_NUM_THREADS" not in os.environ:
                # torch takes every core in every process: ranks x threads would oversubscribe them.
                torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // _ranks_on_node))
    return _device


def dev() -> torch.device:
    """This rank's device, as chosen by :func:`setup_device`; safe to call on any subset of ranks.

    A single process chooses on first use. Under MPI the choice needs every
    rank, so calling this before :func:`setup_device` is a bug and raises.
    """
    if _device is None:
        if world_size() > 1:
            raise RuntimeError("dist_util.dev() called before dist_util.setup_device(), which every rank "
                               "must call together at start-up (dist_util.run_main does)")
        return setup_device()
    return _device


def agree(action: Callable[[], T]) -> T:
    """Run ``action`` on every rank; if it raised :class:`UserError` on any rank, raise it on all.

    This is a collective call: every rank must reach it. The error raised on
    all ranks carries the first failing rank's message (prefixed with that rank
    when it is not rank 0) and is marked ``collective`` so it is printed once.
    """
    error: str | None = None
    result = None
    try:
        result = action()
    except UserError as err:
        error = str(err)
    for source, message in enumerate(COMM.allgather(error)):
        if message is not None:
            raise _collective_error(f"rank {source}: {message}" if source else message)
    return result


def from_root(action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0 only and broadcast its result (or its UserError) to every rank."""
    outcome: tuple[str, Any] | None = None
    if rank() == 0:
        try:
            outcome = ("ok", action())
        except UserError as err:
            outcome = ("error", str(err))
    outcome = COMM.bcast(outcome, root=0)
    if outcome[0] == "error":
        raise _collective_error(outcome[1])
    return outcome[1]


def _collective_error(message: str) -> UserError:
    """A UserError known to every rank, so :func:`run_main` prints it once."""
    error = UserError(message)
    error.collective = True
    return error


class Terminated(BaseException):
    """SIGTERM arrived. Like :class:`KeyboardInterrupt` for SIGINT, it unwinds the stack so cleanups run."""


#: Exit status after a signal: 128 + its number, as a shell reports a process killed by it.
SIGINT_STATUS, SIGTERM_STATUS = 128 + signal.SIGINT, 128 + signal.SIGTERM
#: Seconds the other ranks wait after a signal before ending the MPI job, while rank 0 removes its files.
SIGNAL_CLEANUP_GRACE_S = 2.0


def _raise_for_signal(signum: int, frame: Any) -> None:
    # A second signal would cut the cleanup of the first one short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within: SIGINT raises :class:`KeyboardInterrupt`, SIGTERM :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_for_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_main(main: Callable[[], None]) -> None:
    """Run a script's ``main`` with the error rule above and exit with its status."""
    try:
        with signals_as_exceptions():
            setup_device()
            main()
    except UserError as err:
        if getattr(err, "collective", False) or world_size() == 1:
            if rank() == 0:
                print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)
        # Raised on one rank outside an agreement point: the others cannot know.
        print(f"error: rank {rank()}: {err}", file=sys.stderr, flush=True)
        COMM.Abort(1)
    except (KeyboardInterrupt, Terminated) as signalled:
        status = SIGINT_STATUS if isinstance(signalled, KeyboardInterrupt) else SIGTERM_STATUS
        if world_size() > 1:
            if rank() != 0:  # rank 0 holds what a run writes: let it finish its cleanup before the job ends
                time.sleep(SIGNAL_CLEANUP_GRACE_S)
            COMM.Abort(status)
        sys.exit(status)
    except Exception:  # noqa: BLE001 - a bug on one rank must end every rank, with its traceback
        traceback.print_exc()
        sys.stderr.flush()
        if world_size() > 1:
            COMM.Abort(1)
        sys.exit(1)
    # Keep ranks together at exit so no rank tears down MPI while others still talk.
    COMM.Barrier()


def init_process_group() -> None:
    """Initialise ``torch.distributed`` from MPI: NCCL on GPUs, gloo on CPUs.

    Rank 0's host name and a free port are broadcast, so no environment
    variables need to be set by hand. A single process skips this.
    """
    import torch.distributed as dist

    if dist.is_initialized() or world_size() == 1:
        return
    spans_nodes = len(set(COMM.allgather(socket.gethostname()))) > 1
    address, port = None, None
    if rank() == 0:
        # Ranks on other hosts must reach rank 0 by its address; on one host, loopback.
        address = socket.gethostbyname(socket.getfqdn()) if spans_nodes else "127.0.0.1"
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
    address, port = COMM.bcast((address, port), root=0)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = address, str(port)
    dist.init_process_group(_backend(), init_method="env://", rank=rank(), world_size=world_size())


def _backend() -> str:
    """The ``torch.distributed`` backend for this rank's device: NCCL on GPUs, gloo on CPUs."""
    # NCCL refuses two ranks on one GPU; gloo also runs CUDA tensors (through the host).
    shares_gpu = dev().type == "cuda" and _ranks_on_node > torch.cuda.device_count()
    if shares_gpu and rank() == 0:
        print(f"note: {_ranks_on_node} ranks share {torch.cuda.device_count()} GPU(s) on a node; "
              "torch.distributed uses gloo instead of NCCL", file=sys.stderr, flush=True)
    return "nccl" if dev().type == "cuda" and not shares_gpu else "gloo"


# -- The paper's module API, for scripts written for its code ---------------------


def setup_dist() -> None:
    """Start-up of the paper's scripts: choose this rank's device and initialise ``torch.distributed``.

    After it, ``torch.distributed`` works as those scripts expect (``dist.get_rank``,
    ``dist.get_world_size``, ``dist.all_gather``, ``dist.barrier``): over the MPI
    ranks as :func:`init_process_group` sets it up, and in a single process over a
    group of one (in memory, no port), which :func:`init_process_group` does not
    create. A collective call: every rank must make it. Calling it again changes nothing.
    """
    import torch.distributed as dist

    setup_device()
    init_process_group()
    if not dist.is_initialized():
        dist.init_process_group(_backend(), store=dist.HashStore(), rank=0, world_size=1)


def load_state_dict(path: str | os.PathLike, map_location: str | torch.device | None = None
                    ) -> dict[str, torch.Tensor]:
    """The network weights in ``path``, for ``model.load_state_dict`` (the paper's ``dist_util.load_state_dict``).

    Rank 0 reads the file as :func:`~guided_diffusion.checkpoint.read_checkpoint`
    does (tensors only: a file that would run pickled code is refused) and
    broadcasts its weights, so the other ranks need not reach the file. From the
    project's training checkpoint it takes the EMA weights, as the denoising
    script does. A collective call: every rank must make it.

    Args:
        path: a released ``model.pt``, an ``ema_*.pt`` or a training checkpoint (a local path or a URL).
        map_location: device of the returned tensors (``"cpu"``, ``"cuda:0"``, a ``torch.device``);
            None: the CPU. Unlike ``torch.load``'s, a dict or function is not accepted.

    Raises:
        UserError: on every rank, when the file is missing, corrupt or unsafe.
    """
    if map_location is not None and not isinstance(map_location, (str, torch.device)):
        raise TypeError(f"map_location must be a device (a str or torch.device), got {type(map_location).__name__}")
    state = from_root(lambda: model_state_from(read_checkpoint(path), path))
    device = torch.device(map_location if map_location is not None else "cpu")
    return {key: value.to(device) for key, value in state.items()}

