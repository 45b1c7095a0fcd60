"""vLLM data parallelism (``backend.data_parallel_size``): N replicas, each a ``VLLMEngine`` in its own process.

Design: one engine per device group. vLLM's ``LLM`` refuses ``data_parallel_size > 1`` in one process (its offline
data parallelism needs one launched process per rank plus a coordinator), and a dense model gains nothing from that
coordination, so this module starts N worker processes (multiprocessing "spawn": a fresh interpreter, no inherited
CUDA state or vLLM threads), each owning a ``VLLMEngine`` on its own ``tensor_parallel_size`` devices:

- on GPUs, replica r sees the r-th slice of the visible devices (``CUDA_VISIBLE_DEVICES``);
- on CPU, replica r gets the r-th contiguous slice of this process's cores: its affinity, ``OMP_NUM_THREADS`` (read
  by torch in the single-process engine) and ``VLLM_CPU_OMP_THREADS_BIND`` (read by vLLM's multi-process executor,
  one ``|``-separated list per tensor-parallel rank). Each replica reserves its own ``backend.cpu_kvcache_gb``.

``generate`` shards the requests of one call across the replicas (``shard``: whole requests, since the ``n``
samples of one share a seed, balanced by estimated tokens), sends every shard before waiting on any, and puts the
results back in the original order. Every request carries its own seed (one is drawn here for a request without),
so its samples do not depend on the replica it lands on. ``add_adapter`` and ``sleep`` reach every replica;
``close`` stops every worker and waits for it. A worker that dies raises ``ReplicaDied`` naming the replica and its
log (the parent waits on the workers' process sentinels together with their pipes, so a dead worker never hangs
the run). Logs go to a temporary folder, removed after a clean close and kept after a failure.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import signal
import tempfile
import traceback
from collections.abc import Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from multiprocessing import connection, get_context, util
from pathlib import Path
from typing import Any

from selflen.engines.base import Engine, Request, Result
from selflen.env import visible_gpus
from selflen.errors import SelflenError

log = logging.getLogger(__name__)
OPS = ("generate", "add_adapter", "sleep")  # what a worker runs on its engine


class ReplicaDied(SelflenError):
    """A data-parallel vLLM worker process exited while the run still needed it."""


def request_cost(req: Request) -> int:
    """Estimated tokens a request makes its replica process: the prompt (about 4 characters a token) once, plus
    the token budget of each of its ``n`` samples (decoding dominates, so equal budgets balance request counts).

    >>> from selflen.engines.base import SamplingParams
    >>> request_cost(Request([{"role": "user", "content": "x" * 40}], SamplingParams(max_new_tokens=8, n=2)))
    27
    """
    chars = sum(len(str(m.get("content", ""))) for m in req.messages) + len(req.prefix or "")
    return chars // 4 + 1 + req.params.n * req.params.max_new_tokens


def shard(costs: Sequence[float], parts: int) -> list[list[int]]:
    """The indices of ``costs`` split into ``parts`` lists of near-equal total cost, each in ascending order.

    Costliest first, each to the least loaded part (ties go to the lower part, so equal costs deal round-robin).

    >>> shard([5, 1, 1, 3], 2)
    [[0], [1, 2, 3]]
    >>> shard([1, 1, 1], 2)
    [[0, 2], [1]]
    """
    if parts < 1:
        raise ValueError(f"parts={parts} must be >= 1")
    load = [0.0] * parts
    out: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        p = min(range(parts), key=lambda p: load[p])
        out[p].append(i)
        load[p] += costs[i]
    return [sorted(idx) for idx in out]


def unshard(parts: Sequence[Sequence[int]], values: Sequence[Sequence[Any]], total: int) -> list[Any]:
    """Inverse of ``shard``: ``values[p][j]`` belongs at index ``parts[p][j]`` of the result.

    >>> unshard([[0], [1, 2]], [["a"], ["b", "c"]], 3)
    ['a', 'b', 'c']
    """
    out: list[Any] = [None] * total
    for idx, vals in zip(parts, values, strict=True):
        if len(idx) != len(vals):
            raise RuntimeError(f"a replica answered {len(vals)} of {len(idx)} requests")
        for i, v in zip(idx, vals, strict=True):
            out[i] = v
    if any(v is None for v in out):
        raise RuntimeError("a request got no result from any replica")
    return out


def split_evenly(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` cut into ``parts`` contiguous slices whose sizes differ by at most one (the first ones larger).

    >>> split_evenly([0, 1, 2, 3, 4], 2)
    [[0, 1, 2], [3, 4]]
    """
    size, extra = divmod(len(items), parts)
    out, lo = [], 0
    for p in range(parts):
        hi = lo + size + (p < extra)
        out.append(list(items[lo:hi]))
        lo = hi
    return out


def replica_envs(dp: int, tp: int, gpus: Sequence[str], cores: Sequence[int]) -> list[dict[str, str]]:
    """The environment of each replica: a GPU slice when there are GPUs, else a slice of the cores.

    >>> replica_envs(2, 1, [], [0, 1])[1]
    {'OMP_NUM_THREADS': '1', 'VLLM_CPU_OMP_THREADS_BIND': '1', 'SELFLEN_REPLICA_CORES': '1'}
    >>> replica_envs(2, 2, ["0", "1", "2", "3"], [])[1]
    {'CUDA_VISIBLE_DEVICES': '2,3'}
    """
    if gpus:
        if dp * tp > len(gpus):
            raise ValueError(
                f"backend.data_parallel_size={dp} x backend.tensor_parallel_size={tp} needs {dp * tp} GPUs; "
                f"{len(gpus)} are visible"
            )
        return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[r * tp : (r + 1) * tp])} for r in range(dp)]
    if dp * tp > len(cores):
        raise ValueError(
            f"backend.data_parallel_size={dp} x backend.tensor_parallel_size={tp} needs {dp * tp} CPU cores; "
            f"this process may use {len(cores)}"
        )
    envs = []
    for mine in split_evenly(list(cores), dp):
        bind = "|".join(",".join(map(str, ranks)) for ranks in split_evenly(mine, tp))
        envs.append({
            "OMP_NUM_THREADS": str(len(mine) // tp),
            "VLLM_CPU_OMP_THREADS_BIND": bind,
            "SELFLEN_REPLICA_CORES": ",".join(map(str, mine)),
        })
    return envs


@contextmanager
def _environment(changes: dict[str, str]):  # a context manager
    """``os.environ`` with ``changes`` while a worker starts (spawn copies the environment at start)."""
    before = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _error_payload(err: BaseException) -> tuple[BaseException, str]:
    """An exception the parent can re-raise (itself when it pickles, else a RuntimeError) and its traceback."""
    text = "".join(traceback.format_exception(err))
    try:
        pickle.loads(pickle.dumps(err))
        return err, text
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}"), text


def _worker(rank: int, model: str, kwargs: dict[str, Any], conn: connection.Connection, log_path: str) -> None:
    """One replica: build the engine, then answer ``(op, args)`` messages until "close" or the parent is gone."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s replica{rank} %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    cores = os.environ.get("SELFLEN_REPLICA_CORES")
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
    try:
        from selflen.engines.vllm import VLLMEngine

        engine = VLLMEngine(model, **kwargs)
    except BaseException as err:  # the parent raises it, naming this replica and its log
        conn.send(("error", _error_payload(err)))
        return
    conn.send(("ok", None))
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if op == "close":
            break
        try:
            if op not in OPS:
                raise ValueError(f"unknown operation {op!r}")
            conn.send(("ok", getattr(engine, op)(*args)))
        except Exception as err:
            conn.send(("error", _error_payload(err)))
    log.info("replica %d: closing its engine", rank)
    engine.close()
    log.info("replica %d: closed", rank)
    with suppress(OSError):
        conn.send(("ok", None))


def _stop(procs: list, conns: list, timeout_s: float) -> None:  # processes and connections
    """Ask every live worker to close, wait for it, then terminate and kill whatever still runs."""
    for proc, conn in zip(procs, conns, strict=True):
        if proc.is_alive():
            with suppress(OSError):
                conn.send(("close", ()))
    for proc in procs:
        proc.join(timeout_s)
        if proc.is_alive():
            log.warning("vLLM replica (pid %s) did not stop within %.0f s: terminating it", proc.pid, timeout_s)
            proc.terminate()
            proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    for conn in conns:
        conn.close()


class DataParallelVLLM(Engine):
    """``data_parallel_size`` ``VLLMEngine`` replicas in worker processes, used as one engine."""

    name = "vllm"
    exclusive = True  # holds device memory: the pool keeps one vLLM engine at a time

    def __init__(
        self,
        model: str,
        data_parallel_size: int,
        tensor_parallel_size: int = 1,
        log_dir: str | None = None,
        stop_timeout_s: float = 120.0,
        **engine_kwargs: Any,
    ) -> None:
        import torch

        self.data_parallel_size, self.stop_timeout_s = data_parallel_size, stop_timeout_s
        self.cuda = torch.cuda.is_available()
        self.can_sleep = bool(engine_kwargs.get("sleep_mode")) and self.cuda
        self.gpu_memory_utilization = float(engine_kwargs.get("gpu_memory_utilization", 0.85))
        self._adapters: dict[str, str] = {}
        self._failed = False
        gpus = visible_gpus() if self.cuda else []
        cores = sorted(os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1))
        envs = replica_envs(data_parallel_size, tensor_parallel_size, gpus, cores)
        self._own_log_dir = log_dir is None  # a temporary folder, removed after a clean close
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="selflen-vllm-dp-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.logs = [self.log_dir / f"replica{r}.log" for r in range(data_parallel_size)]
        ctx = get_context("spawn")
        self._procs: list = []
        self._conns: list = []
        kwargs = {**engine_kwargs, "tensor_parallel_size": tensor_parallel_size}
        for rank, env in enumerate(envs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(rank, model, kwargs, child, str(self.logs[rank])),
                               name=f"selflen-vllm-replica{rank}")
            with _environment(env):
                proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
            log.info("vLLM replica %d (pid %d): %s, log %s", rank, proc.pid, env, self.logs[rank])
        # before multiprocessing joins its children at exit: a pool never closed must not hang the interpreter
        self._finalizer = util.Finalize(self, _stop, args=(self._procs, self._conns, stop_timeout_s), exitpriority=10)
        try:
            self._collect(range(data_parallel_size), "starting")
        except BaseException:
            self.close()
            raise

    def _collect(self, ranks: Sequence[int], what: str) -> dict[int, Any]:
        """Wait for one reply from each of ``ranks``; a worker that exits instead raises ``ReplicaDied``."""
        pending, values, errors = set(ranks), {}, []
        while pending:
            waitables = [self._conns[r] for r in pending] + [self._procs[r].sentinel for r in pending]
            connection.wait(waitables)
            for r in sorted(pending):
                reply, gone = None, not self._procs[r].is_alive()
                if self._conns[r].poll():
                    try:
                        reply = self._conns[r].recv()
                    except (EOFError, OSError):  # its end of the pipe closed: it is exiting
                        gone = True
                if reply is None and not gone:
                    continue
                pending.discard(r)
                if reply is None:
                    self._died(r, what)
                status, value = reply
                if status == "ok":
                    values[r] = value
                else:
                    errors.append((r, value))
        if errors:  # every reply is in, so the pipes stay in step for the next call
            r, (err, text) = errors[0]
            err.add_note(f"raised in vLLM replica {r} while {what} (log {self.logs[r]}):\n{text}")
            raise err
        return values

    def _died(self, rank: int, what: str) -> None:
        self._failed = True
        proc = self._procs[rank]
        proc.join(5)
        try:
            tail = self.logs[rank].read_text(errors="replace").splitlines()[-20:]
        except OSError:
            tail = []
        log.error("vLLM replica %d died; the end of %s:\n%s", rank, self.logs[rank], "\n".join(tail))
        self.close(timeout_s=5.0)  # the others may be mid-generation: their results are lost anyway
        raise ReplicaDied(
            f"vLLM replica {rank} of backend.data_parallel_size={self.data_parallel_size} exited with code "
            f"{proc.exitcode} while {what}; its log: {self.logs[rank]}"
        )

    def _check_open(self) -> None:
        if not self._procs:
            raise RuntimeError("this data-parallel vLLM engine is closed")

    def _call(self, op: str, args: Sequence[Any], ranks: Sequence[int] | None = None) -> dict[int, Any]:
        self._check_open()
        ranks = range(self.data_parallel_size) if ranks is None else ranks
        for r in ranks:
            try:
                self._conns[r].send((op, tuple(args)))
            except OSError:  # its end of the pipe is gone: it died
                self._died(r, op)
        return self._collect(ranks, f"running {op}")

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        self._check_open()
        # a request without a seed gets one here: the replicas' own random states are seeded alike (vLLM seeds
        # Python's random in-process), so drawing it there would repeat the same seeds on every replica
        requests = [r if r.params.seed is not None else replace(r, params=r.params.with_(seed=random.getrandbits(48)))
                    for r in requests]
        parts = shard([request_cost(r) for r in requests], self.data_parallel_size)
        busy = [r for r, idx in enumerate(parts) if idx]
        for r in busy:
            try:
                self._conns[r].send(("generate", ([requests[i] for i in parts[r]], desc)))
            except OSError:
                self._died(r, "receiving requests")
        got = self._collect(busy, "generating") if busy else {}
        return unshard([parts[r] for r in busy], [got[r] for r in busy], len(requests))

    def add_adapter(self, name: str, path: str) -> None:
        from selflen.models import check_adapter

        check_adapter(path)  # one clear error here, not one per replica
        self._call("add_adapter", (name, str(path)))
        self._adapters[name] = str(path)

    def sleep(self) -> None:
        """Every replica sleeps (weights to CPU, KV cache dropped); each wakes on its next request."""
        self._call("sleep", ())

    def close(self, timeout_s: float | None = None) -> None:
        """Stop every worker: each closes its engine and exits; one still running after ``timeout_s`` (default
        ``stop_timeout_s``) is terminated."""
        if not self._procs:
            return
        procs, self._procs = self._procs, []
        self._finalizer.cancel()
        _stop(procs, self._conns, self.stop_timeout_s if timeout_s is None else timeout_s)
        self._conns = []
        if self._own_log_dir and not self._failed:
            shutil.rmtree(self.log_dir, ignore_errors=True)
