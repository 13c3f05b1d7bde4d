"""Fast-slow inference (paper section 3.3 and A.1): the AE plans every step against a UE cache that
is refreshed every `k` steps.

- `mode="sync"`: at every k-th step the UE runs in the calling thread before the AE
  (k = 1 is the synchronous AutoMoT-S baseline: UE + AE every step).
- `mode="background"`: at every k-th step the newest observation is handed to a refresher
  (`mot.workers`: a thread with its own bounded torch pool, or a worker process pinned to its own
  cores) with a one-slot mailbox (newest wins). A finished cache is published by swapping one
  reference under a lock (a double buffer: the fast loop reads the front cache while the worker
  fills the back one). The fast loop never waits for the UE, except for the very first cache of an
  episode, and never sees a half-written cache: a `UECache` is complete before it is published and
  is never mutated afterwards.

Every plan records the cache it used (`PlanStep.cache`, its step, generation and age in steps and
seconds). A UE failure (either mode) is logged and exposed (`last_error`, `ue_failures`,
`PlanStep.ue_error`); planning continues on the last good cache until it is older than
`max_cache_age` steps, then `StaleCacheError` is raised. Results and failures of a refresh that
belongs to an earlier episode (it finished after `reset`) are dropped: they never touch the new
episode's cache, error state or first-cache wait.
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
from mot.workers import ProcessRefresher, Request, ThreadRefresher, default_ue_threads

log = logging.getLogger(__name__)

MODES = ("sync", "background")
EXECUTORS = ("thread", "process")


class StaleCacheError(RuntimeError):
    """The newest good UE cache is older than allowed (the UE keeps failing or is too slow)."""


@dataclass
class FastSlowConfig:
    """refresh_every (k): UE refresh period in steps; 1 = synchronous AutoMoT-S.
    max_cache_age: steps; planning on an older cache raises StaleCacheError. None = max(8, 4k).
    It must be at least the age a healthy run reaches: k - 1 in sync mode, k in background mode
    (the refresh requested at step n is published at step n + 1 at the earliest).
    executor / ue_threads / ue_cores: background mode only (see `mot.workers`); ue_threads None =
    half of the available cores; ue_cores None = no pinning.
    seed: the planner's torch.Generator (sampling heads) and the reasoning seeds; reset() reseeds
    per episode.
    """

    refresh_every: int = 2
    mode: str = "sync"
    max_cache_age: int | None = None
    first_cache_timeout_s: float = 600.0
    seed: int = 0
    executor: str = "thread"
    ue_threads: int | None = None
    ue_cores: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.refresh_every, int) or self.refresh_every < 1:
            raise ValueError(
                f"FastSlowConfig.refresh_every: expected an int >= 1, got {self.refresh_every!r}"
            )
        check_choice("FastSlowConfig.mode", self.mode, MODES)
        check_choice("FastSlowConfig.executor", self.executor, EXECUTORS)
        if self.max_cache_age is None:
            self.max_cache_age = max(8, 4 * self.refresh_every)
        need = self.healthy_age
        if not isinstance(self.max_cache_age, int) or self.max_cache_age < need:
            raise ValueError(
                f"FastSlowConfig.max_cache_age: expected an int >= {need} (a healthy {self.mode} run with "
                f"refresh_every={self.refresh_every} reaches cache age {need}), got {self.max_cache_age!r}"
            )
        check_positive("FastSlowConfig.first_cache_timeout_s", self.first_cache_timeout_s)
        if self.ue_threads is not None and (not isinstance(self.ue_threads, int) or self.ue_threads < 1):
            raise ValueError(
                f"FastSlowConfig.ue_threads: expected None or an int >= 1, got {self.ue_threads!r}"
            )
        if self.ue_cores is not None:
            self.ue_cores = tuple(self.ue_cores)
            if not self.ue_cores or any(not isinstance(c, int) or c < 0 for c in self.ue_cores):
                raise ValueError(
                    f"FastSlowConfig.ue_cores: expected None or a non-empty tuple of core ids, got {self.ue_cores!r}"
                )

    @property
    def healthy_age(self) -> int:
        """The largest cache age a run without UE failures reaches when the UE is fast enough."""
        return self.refresh_every - 1 if self.mode == "sync" else self.refresh_every


@dataclass
class PlanStep:
    """One fast-loop result (batch of one).

    waypoints (6, 2), route (20, 2): ego frame, metres. lateral / longitudinal: the arg-max
    meta-action per horizon (lateral is None in the longitudinal3 set). cache: the UE cache the AE
    attended to (cache_step / cache_generation / cache_age_*: which one and how old).
    ue_refreshed: the cache changed since the previous step. reasoning: the UE's generated text in
    that cache (None without reasoning).
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
    cache: UECache
    reasoning: str | None = None


def reasoning_seed(planner_seed: int, episode_seed: int, step: int) -> int:
    """The seed of a refresh's sampled reasoning: a function of (planner seed, episode, step) only,
    so sync and background runs (and reruns) sample the same text for the same request."""
    return int(np.random.SeedSequence([planner_seed, episode_seed, step]).generate_state(1)[0])


class FastSlowPlanner:
    """Closed-loop planner over a `MoTBackbone`; also a `automot.types.Policy` (`reset`, `plan`).

    The AE is switched to eval mode: the planner is an inference object. Call `close()` (or use it
    as a context manager) to stop a background worker.
    """

    def __init__(self, backbone: MoTBackbone, config: FastSlowConfig | None = None, **overrides) -> None:
        if config is not None and overrides:
            raise ValueError(
                f"FastSlowPlanner: pass either config or overrides, got both ({sorted(overrides)})"
            )
        self.backbone = backbone
        self.config = config if config is not None else FastSlowConfig(**overrides)
        process = self.config.mode == "background" and self.config.executor == "process"
        if process and not hasattr(backbone.ue, "recipe"):
            raise ValueError(
                "FastSlowConfig.executor: 'process' needs a UE that can be rebuilt in another process "
                f"(one with recipe(), e.g. FrozenQwen3VLExpert), got {type(backbone.ue).__name__}; "
                "use executor='thread'"
            )
        self.device = backbone.ae.decision_queries.device
        backbone.ae.eval()
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._worker: ThreadRefresher | ProcessRefresher | None = None
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
        self._episode_seed = 0 if episode is None else int(episode.seed)
        seed = self.config.seed if episode is None else self.config.seed * 1_000_003 + self._episode_seed
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

    def start(self) -> None:
        """Background mode: start the refresher now (a worker process takes seconds to start);
        otherwise it starts at the first step."""
        if self.config.mode == "background":
            self._ensure_worker()

    def identity(self) -> str:
        """What this planner's plans depend on, as a digest: the AE's (and head's) weights and config,
        the UE's weights and settings, the refresh period, the mode and the sampling seed. Episode
        records carry it, so a resumed evaluation never mixes in another planner's episodes."""
        from dataclasses import asdict

        from automot.digest import state_digest

        ue = self.backbone.ue
        if hasattr(ue, "fingerprint"):
            ue_id = ue.fingerprint(runtime=False)
        elif isinstance(ue, torch.nn.Module):
            ue_id = state_digest(ue.state_dict(), type(ue).__name__)
        else:
            ue_id = type(ue).__name__
        c = self.config
        settings = {
            "ae_config": asdict(self.backbone.ae.config),
            "ue": ue_id,
            "planner": {"refresh_every": c.refresh_every, "mode": c.mode, "seed": c.seed},
        }
        return state_digest(self.backbone.ae.state_dict(), settings)

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
            request = Request(
                self._episode,
                n,
                float(observation.time_s),
                reasoning_seed(self.config.seed, self._episode_seed, n),
                batch,
            )
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
        """`Policy` protocol: waypoints (6, 2) and route (20, 2) numpy, the UE's reasoning text,
        cache age and decisions in `info`."""
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
        return PolicyOutput(waypoints=s.waypoints, route=s.route, info=info, reasoning=s.reasoning)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Background mode: block until no refresh is queued or running (tests, benchmarks)."""
        return True if self._worker is None else self._worker.wait_idle(timeout)

    # -- the slow path ------------------------------------------------------------------------
    def _run_ue(self, request: Request) -> UECache:
        cache = self.backbone.prefill(
            request.batch, step=request.step, time_s=request.time_s, seed=request.seed
        )
        # A malformed or non-finite cache is a UE failure too; checked once, before publication.
        return cache.validate(self.backbone.ae.geometry)

    def _refresh(self, request: Request) -> None:
        """Sync mode: run the UE on `request` in this thread and publish its result."""
        cache, error = None, None
        try:
            cache = self._run_ue(request)
        except Exception as err:  # any UE failure: keep planning on the last good cache
            error = err
        self._publish(request, cache, error)

    def _publish(self, request: Request, cache: UECache | None, error: BaseException | None) -> None:
        """Swap in a finished cache, or record a failure; either only for the current episode."""
        with self._lock:
            self.ue_calls += 1
            current = request.episode == self._episode
            if error is not None:
                self.ue_failures += 1
                if current:
                    self.last_error = error
            elif current:
                self._generation += 1
                # The swap: one reference assignment of a complete, never-mutated cache.
                self._front = cache.with_generation(self._generation)
                self.last_error = None
            if current:
                self._published.notify_all()
        if error is not None:
            log.error(
                "understanding expert refresh failed at step %d%s",
                request.step,
                "" if current else " (of a previous episode; ignored)",
                exc_info=error,
            )

    def _ensure_worker(self) -> ThreadRefresher | ProcessRefresher:
        if self._worker is None:
            cfg = self.config
            threads = cfg.ue_threads if cfg.ue_threads is not None else default_ue_threads()
            if cfg.executor == "process":
                self._worker = ProcessRefresher(
                    self.backbone.ue.recipe(), self._publish, threads=threads, cores=cfg.ue_cores
                )
            else:
                self._worker = ThreadRefresher(
                    self._run_ue, self._publish, threads=threads, cores=cfg.ue_cores, device=self.device
                )
        return self._worker

    def _current_cache(self, n: int) -> UECache:
        with self._lock:
            if self._front is None and self.config.mode == "background":
                # Nothing to plan against yet: the first cache of an episode is waited for. Only
                # this episode's outcome wakes the wait (`_publish` ignores older episodes).
                self._published.wait_for(
                    lambda: self._front is not None or self.last_error is not None,
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
            cache=cache,
            reasoning=None if out.reasoning is None else out.reasoning[0],
        )
