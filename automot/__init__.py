"""AutoMoT: a Mixture-of-Transformers driving backbone with a diffusion action refiner.

This package is the distribution's own namespace: the command line (`automot ...`), the benchmarks,
and the small pieces every other package shares (registries, input checks, atomic IO, the shared
trajectory/decision specification). The model and world live in the top-level packages `heads`,
`refiner`, `moa`, `mot`, `driving`, `training` and `studies`; see ARCHITECTURE.md.
"""

__version__ = "0.1.0"
