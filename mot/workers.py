"""Where the background UE refresh runs (paper section 3.3: the slow loop off the critical path).

Both refreshers have a one-slot mailbox: a newer request replaces a queued one (the UE should
always look at the newest observation), at most one refresh runs at a time, and every finished
refresh is handed to `publish(request, cache, error)` exactly once.

- `ThreadRefresher`: a daemon thread in this process with its own bounded torch intra-op pool
  (`torch.set_num_threads` is per thread under OpenMP) and, optionally, its own CPU affinity
  (Linux affinity is per thread). On CUDA the UE runs on its own stream and the stream is
  synchronised before the cache is published. Torch kernels release the GIL, but the UE's Python
  glue (processor, module calls) still takes it from the fast loop.
- `ProcessRefresher`: a spawned process that rebuilds the UE from a `UERecipe` (config, weights in
  shared memory, processor), pinned to its own cores and threads: no GIL shared with the fast
  loop. Caches come back through shared memory; a listener thread in this process publishes them.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from automot.types import SensorBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One UE refresh: the observation batch of `step` in `episode`; `seed` seeds sampled reasoning."""

    episode: int
    step: int
    time_s: float
    seed: int
    batch: SensorBatch


Publish = Callable[[Request, Any, "BaseException | None"], None]


def default_ue_threads() -> int:
    """Half of the cores this process may use (at least 1): the other half stays with the fast loop."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def _pin(cores: tuple[int, ...] | None) -> None:
    if cores is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))  # pid 0 = the calling thread on Linux


class _Mailbox:
    """The one-slot mailbox shared by both refreshers (guarded by `cv`)."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.pending: Request | None = None
        self.busy = False
        self.stopping = False

    def put(self, request: Request) -> None:
        with self.cv:
            if self.stopping:
                raise RuntimeError("UE refresher: submit after stop()")
            self.pending = request
            self.cv.notify_all()

    def drop_pending(self) -> None:
        with self.cv:
            self.pending = None
            self.cv.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: not self.busy and self.pending is None, timeout=timeout)


class ThreadRefresher:
    """Runs `run(request) -> UECache` in one background thread; see the module docstring."""

    def __init__(
        self,
        run: Callable[[Request], Any],
        publish: Publish,
        *,
        threads: int,
        cores: tuple[int, ...] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self._run, self._publish = run, publish
        self._threads, self._cores = threads, cores
        self._device = device
        self._box = _Mailbox()
        self._thread = threading.Thread(target=self._loop, name="ue-refresh", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> None:
        self._box.put(request)

    def drop_pending(self) -> None:
        self._box.drop_pending()

    def wait_idle(self, timeout: float | None) -> bool:
        return self._box.wait_idle(timeout)

    def stop(self) -> None:
        with self._box.cv:
            self._box.stopping = True
            self._box.pending = None
            self._box.cv.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        torch.set_num_threads(self._threads)  # this thread's pool only (OpenMP: per thread)
        _pin(self._cores)
        stream = None
        if self._device is not None and self._device.type == "cuda":
            stream = torch.cuda.Stream(device=self._device)
        box = self._box
        while True:
            with box.cv:
                box.cv.wait_for(lambda: box.pending is not None or box.stopping)
                if box.stopping:
                    return
                request, box.pending, box.busy = box.pending, None, True
            try:
                cache, error = None, None
                try:
                    with torch.no_grad():
                        if stream is None:
                            cache = self._run(request)
                        else:
                            with torch.cuda.stream(stream):
                                cache = self._run(request)
                            stream.synchronize()  # complete before anyone can read it
                except Exception as err:  # reported, never raised in the worker
                    error = err
                self._publish(request, cache, error)
            finally:
                with box.cv:
                    box.busy = False
                    box.cv.notify_all()


class ProcessRefresher:
    """Runs the UE in a spawned process rebuilt from `recipe`; see the module docstring.

    `recipe` must be picklable and have `build() -> UnderstandingExpert`. Starting the process
    (imports, model build) takes seconds; `start_timeout_s` bounds it.
    """

    def __init__(
        self,
        recipe,
        publish: Publish,
        *,
        threads: int,
        cores: tuple[int, ...] | None = None,
        start_timeout_s: float = 300.0,
    ) -> None:
        import torch.multiprocessing as tmp

        ctx = tmp.get_context("spawn")  # a forked torch/OpenMP process is not safe
        self._publish = publish
        self._requests = ctx.Queue()
        self._results = ctx.Queue()
        self._proc = ctx.Process(
            target=_serve,
            args=(recipe, self._requests, self._results, threads, cores),
            name="ue-refresh",
            daemon=True,
        )
        self._proc.start()
        ready = self._get(start_timeout_s)
        if ready is None or ready[0] != "ready":
            self._proc.kill()
            raise RuntimeError(f"UE worker process failed to start: {ready[2] if ready else 'timed out'}")
        self._box = _Mailbox()
        self._inflight: Request | None = None
        self._next_id = 0
        self._listener = threading.Thread(target=self._listen, name="ue-refresh-listener", daemon=True)
        self._listener.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def submit(self, request: Request) -> None:
        self._box.put(request)
        self._pump()

    def drop_pending(self) -> None:
        self._box.drop_pending()

    def wait_idle(self, timeout: float | None) -> bool:
        return self._box.wait_idle(timeout)

    def stop(self) -> None:
        with self._box.cv:
            self._box.stopping = True
            self._box.pending = None
            self._box.cv.notify_all()
        self._requests.put(None)
        self._listener.join(timeout=60)
        self._proc.join(timeout=60)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()

    def _pump(self) -> None:
        """Send the pending request if the process is idle (called on submit and on each result)."""
        box = self._box
        with box.cv:
            if box.busy or box.pending is None or box.stopping:
                return
            request, box.pending, box.busy = box.pending, None, True
            self._inflight = request
            # Plain tensors through the queue: torch moves them into shared memory.
            self._requests.put((request.step, request.time_s, request.seed, request.batch))

    def _get(self, timeout: float):
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None

    def _listen(self) -> None:
        while True:
            try:
                msg = self._get(1.0)
            except Exception as exc:
                # Its shared-memory handles are served by the worker; a worker that already exited
                # (on stop) leaves a result nobody can open. While running, it is a failed refresh.
                with self._box.cv:
                    stopping = self._box.stopping
                if stopping:
                    self._finish(None, None, publish=False)
                    return
                self._finish(None, RuntimeError(f"UE worker result could not be received: {exc!r}"))
                continue
            with self._box.cv:
                stopping = self._box.stopping
            if msg is None:
                if stopping and not self._box.busy:
                    return
                if not self._proc.is_alive():
                    self._finish(
                        None, RuntimeError(f"UE worker process died (exit code {self._proc.exitcode})")
                    )
                    return
                continue
            kind, cache, detail = msg
            if kind == "stopped":
                return
            error = (
                None if kind == "ok" else RuntimeError(f"UE refresh failed in the worker process: {detail}")
            )
            self._finish(cache, error)

    def _finish(self, cache, error: BaseException | None, publish: bool = True) -> None:
        request = self._inflight
        self._inflight = None
        try:
            if request is not None and publish:
                self._publish(request, cache, error)
        finally:
            with self._box.cv:
                self._box.busy = False
                self._box.cv.notify_all()
            self._pump()


def _serve(recipe, requests, results, threads: int, cores: tuple[int, ...] | None) -> None:
    """The worker process: build the UE, then answer requests until a None arrives."""
    try:
        torch.set_num_threads(threads)
        _pin(cores)
        ue = recipe.build()
    except Exception:
        results.put(("error", None, traceback.format_exc()))
        return
    results.put(("ready", None, None))
    while True:
        msg = requests.get()
        if msg is None:
            results.put(("stopped", None, None))
            return
        step, time_s, seed, batch = msg
        try:
            with torch.no_grad():
                cache = ue.prefill(batch, step=step, time_s=time_s, seed=seed)
                cache.validate(ue.geometry)
            results.put(("ok", cache, None))
        except Exception:
            results.put(("error", None, traceback.format_exc(limit=8)))
