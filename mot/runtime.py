"""Fast-slow inference (paper section 3.3 and A.1): the AE plans every step against a UE cache that
is refreshed every `k` steps.

- `mode="sync"`: at every k-th step the UE runs in the calling thread before the AE
  (k = 1 is the synchronous AutoMoT-S baseline: UE + AE every step).
- `mode="background"`: at every k-th step the newest observation is handed to a worker thread
  (one slot, newest wins); the worker runs the UE and publishes the finished cache by swapping one
  reference under a lock (a double buffer: the fast loop reads the front cache while the worker
  fills the back one). The fast loop never waits for the UE, except for the very first cache of an
  episode, and never sees a half-written cache: a `UECache` is complete before it is published and
  is never mutated afterwards.

Every plan records the age of the cache it used (steps and seconds since the UE's observation).
A UE failure (either mode) is logged and exposed (`last_error`, `ue_failures`, `PlanStep.ue_error`);
planning continues on the last good cache until it is older than `max_cache_age` steps, then
`StaleCacheError` is raised.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from automot.checks import check_choice, check_positive
from automot.types import EpisodeInfo, Observation, PolicyOutput, SensorBatch
from mot.action_expert import MoTOutput
from mot.backbone import MoTBackbone
from mot.cache import UECache

log = logging.getLogger(__name__)

MODES = ("sync", "background")


class StaleCacheError(RuntimeError):
    """The newest good UE cache is older than allowed (the UE keeps failing or is too slow)."""


@dataclass
class FastSlowConfig:
    refresh_every: int = 2  # k: UE refresh period in steps; 1 = synchronous AutoMoT-S
    mode: str = "sync"
    max_cache_age: int = 8  # steps; planning on an older cache raises StaleCacheError
    first_cache_timeout_s: float = 600.0
    seed: int = 0  # the planner's torch.Generator (sampling heads); reset() reseeds per episode

    def __post_init__(self) -> None:
        if not isinstance(self.refresh_every, int) or self.refresh_every < 1:
            raise ValueError(
                f"FastSlowConfig.refresh_every: expected an int >= 1, got {self.refresh_every!r}"
            )
        check_choice("FastSlowConfig.mode", self.mode, MODES)
        if not isinstance(self.max_cache_age, int) or self.max_cache_age < self.refresh_every - 1:
            raise ValueError(
                f"FastSlowConfig.max_cache_age: expected an int >= refresh_every - 1 = {self.refresh_every - 1} "
                f"(a healthy cache reaches that age), got {self.max_cache_age!r}"
            )
        check_positive("FastSlowConfig.first_cache_timeout_s", self.first_cache_timeout_s)


@dataclass
class PlanStep:
    """One fast-loop result (batch of one).

    waypoints (6, 2), route (20, 2): ego frame, metres. lateral / longitudinal: the arg-max
    meta-action per horizon (lateral is None in the longitudinal3 set). cache_*: which UE cache was
    used and how old it was. ue_refreshed: the cache changed since the previous step.
    """

    waypoints: np.ndarray
    route: np.ndarray
    lateral: tuple[str, ...] | None
    longitudinal: tuple[str, ...]
    step: int
    cache_step: int
    cache_generation: int
    cache_age_steps: int
    cache_age_s: float
    ue_refreshed: bool
    ue_error: str | None
    latency_s: float
    output: MoTOutput


@dataclass(frozen=True)
class _Request:
    episode: int
    step: int
    time_s: float
    batch: SensorBatch


class FastSlowPlanner:
    """Closed-loop planner over a `MoTBackbone`; also a `automot.types.Policy` (`reset`, `plan`).

    The AE is switched to eval mode: the planner is an inference object.
    """

    def __init__(self, backbone: MoTBackbone, config: FastSlowConfig | None = None, **overrides) -> None:
        if config is not None and overrides:
            raise ValueError(
                f"FastSlowPlanner: pass either config or overrides, got both ({sorted(overrides)})"
            )
        self.backbone = backbone
        self.config = config if config is not None else FastSlowConfig(**overrides)
        self.device = backbone.ae.decision_queries.device
        backbone.ae.eval()
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._worker: _Worker | None = None
        self.ue_calls = 0
        self.ue_failures = 0
        self.last_error: BaseException | None = None
        self._episode = 0
        self.reset(None)

    # -- episode ------------------------------------------------------------------------------
    def reset(self, episode: EpisodeInfo | None = None) -> None:
        """Start an episode: forget the cache, restart step counting, reseed the generator.

        The generator seed is `config.seed * 1_000_003 + episode.seed` (just `config.seed` without an
        episode), so a given (planner seed, episode seed) pair always samples the same noise.
        """
        seed = self.config.seed if episode is None else self.config.seed * 1_000_003 + int(episode.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        with self._lock:
            self._episode += 1
            self._front: UECache | None = None
            self._generation = 0
            self.last_error = None
        self._step = 0
        self._last_generation = -1
        if self._worker is not None:
            self._worker.drop_pending()  # a queued request of the old episode is no longer wanted

    def close(self) -> None:
        """Stop the background worker (if any)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def __enter__(self) -> FastSlowPlanner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def cache(self) -> UECache | None:
        """The current front cache."""
        with self._lock:
            return self._front

    # -- the fast loop ------------------------------------------------------------------------
    def step(self, observation: Observation) -> PlanStep:
        """Plan for one observation; refreshes the UE cache every `refresh_every` steps."""
        start = time.perf_counter()
        n = self._step
        batch = SensorBatch.from_observations([observation]).to(self.device)
        # Sensor sizes other than the trained ones are the caller's error, raised here (a refresh
        # failure would only be recorded, then surface as a stale cache).
        batch.check_shapes(self.backbone.ae.input_shapes)
        if n % self.config.refresh_every == 0:
            request = _Request(self._episode, n, float(observation.time_s), batch)
            if self.config.mode == "sync":
                self._refresh(request)
            else:
                self._ensure_worker().submit(request)
        cache = self._current_cache(n)
        with torch.no_grad():
            out = self.backbone.act(batch, cache, generator=self.generator)
        self._step = n + 1
        refreshed = cache.generation != self._last_generation
        self._last_generation = cache.generation
        return self._plan_step(
            out, cache, n, float(observation.time_s), refreshed, time.perf_counter() - start
        )

    def plan(self, observation: Observation) -> PolicyOutput:
        """`Policy` protocol: waypoints (6, 2) and route (20, 2) numpy, cache age in `info`."""
        s = self.step(observation)
        info = {
            "cache_age_steps": s.cache_age_steps,
            "cache_age_s": s.cache_age_s,
            "cache_generation": s.cache_generation,
            "ue_refreshed": s.ue_refreshed,
            "ue_error": s.ue_error,
            "lateral": s.lateral,
            "longitudinal": s.longitudinal,
            "latency_s": s.latency_s,
        }
        return PolicyOutput(waypoints=s.waypoints, route=s.route, info=info)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Background mode: block until no refresh is queued or running (tests, benchmarks)."""
        return True if self._worker is None else self._worker.wait_idle(timeout)

    # -- the slow path ------------------------------------------------------------------------
    def _refresh(self, request: _Request) -> None:
        """Run the UE on `request` and publish its cache; a failure is recorded, not raised."""
        self.ue_calls += 1
        try:
            cache = self.backbone.prefill(request.batch, step=request.step, time_s=request.time_s)
            # A malformed or non-finite cache is a UE failure too; checked once, before publication.
            cache.validate(self.backbone.ae.geometry)
        except Exception as err:  # any UE failure: keep planning on the last good cache
            log.exception("understanding expert refresh failed at step %d", request.step)
            with self._lock:
                self.ue_failures += 1
                self.last_error = err
                self._published.notify_all()
            return
        with self._lock:
            if request.episode != self._episode:
                return  # finished after a reset: belongs to an old episode
            self._generation += 1
            # The swap: one reference assignment of a complete, never-mutated cache.
            self._front = cache.with_generation(self._generation)
            self.last_error = None
            self._published.notify_all()

    def _ensure_worker(self) -> _Worker:
        if self._worker is None:
            self._worker = _Worker(self._refresh)
        return self._worker

    def _current_cache(self, n: int) -> UECache:
        with self._lock:
            if self._front is None and self.config.mode == "background":
                # Nothing to plan against yet: the first cache of an episode is waited for.
                failures = self.ue_failures
                self._published.wait_for(
                    lambda: self._front is not None or self.ue_failures != failures,
                    timeout=self.config.first_cache_timeout_s,
                )
            cache, err = self._front, self.last_error
        if cache is None:
            raise StaleCacheError(
                f"no UE cache available at step {n}: the first refresh of the episode "
                + (f"failed ({err!r})" if err is not None else "did not finish in time")
            ) from err
        age = n - cache.step
        if age > self.config.max_cache_age:
            raise StaleCacheError(
                f"UE cache is {age} steps old at step {n} (max_cache_age={self.config.max_cache_age}); "
                f"last UE error: {err!r}"
            ) from err
        return cache

    def _plan_step(
        self, out: MoTOutput, cache: UECache, n: int, time_s: float, refreshed: bool, latency: float
    ) -> PlanStep:
        cfg = self.backbone.config
        lateral = None
        if out.lateral_logits is not None:
            lateral = tuple(cfg.lateral_actions[i] for i in out.lateral_logits[0].argmax(-1).tolist())
        longitudinal = tuple(
            cfg.longitudinal_actions[i] for i in out.longitudinal_logits[0].argmax(-1).tolist()
        )
        err = self.last_error
        return PlanStep(
            waypoints=out.plan.waypoints[0].detach().cpu().numpy(),
            route=out.plan.route[0].detach().cpu().numpy(),
            lateral=lateral,
            longitudinal=longitudinal,
            step=n,
            cache_step=cache.step,
            cache_generation=cache.generation,
            cache_age_steps=n - cache.step,
            cache_age_s=time_s - cache.time_s,
            ue_refreshed=refreshed,
            ue_error=None if err is None else repr(err),
            latency_s=latency,
            output=out,
        )


class _Worker:
    """One background thread with a one-slot mailbox (the newest request replaces a queued one)."""

    def __init__(self, run) -> None:
        self._run_request = run
        self._cv = threading.Condition()
        self._request: _Request | None = None
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="ue-refresh", daemon=True)
        self._thread.start()

    def submit(self, request: _Request) -> None:
        with self._cv:
            self._request = request
            self._cv.notify_all()

    def drop_pending(self) -> None:
        with self._cv:
            self._request = None
            self._cv.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: not self._busy and self._request is None, timeout=timeout)

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._request = None
            self._cv.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._request is not None or self._stopping)
                if self._stopping:
                    return
                request, self._request, self._busy = self._request, None, True
            try:
                with torch.no_grad():
                    self._run_request(request)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
