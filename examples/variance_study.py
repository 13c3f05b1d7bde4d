"""A variance study from Python: MLP vs diffusion head over training seeds, sampling seeds and
episodes, then its statistics (robust aggregates, the detectable difference) and its report.

    python examples/variance_study.py --out runs/example_study              # ~10 min on 2 cores (the demo's size)
    python examples/variance_study.py --out runs/example_smoke --profile smoke  # minutes: every code path

Kill it at any point and run it again: finished tasks are kept and the summary is identical.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example_study")
    parser.add_argument("--profile", default="demo", help="starting point: demo, full, smoke")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from studies.config import load_study_config
    from studies.report import format_headline
    from studies.runner import run_study

    # Any StudyConfig field can be overridden with a nested dict (the same fields as a YAML --config).
    config = load_study_config(args.profile, {"bootstrap_samples": 4000} if args.profile != "smoke" else None)
    result = run_study(args.out, config, workers=args.workers, progress=print, progress_every=60)
    s = result.summary

    print(format_headline(s))
    robust = s["robust"]
    for head, q in robust["iqm"].items():
        print(f"IQM of episode DS, {head}: {q['estimate']:.1f} [{q['ci_low']:.1f}, {q['ci_high']:.1f}]")
    for p in robust["probability_of_improvement"].values():
        print(f"P({p['x']} > {p['y']}) = {p['estimate']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]")
    for name, comp in s["power"]["comparisons"].items():
        t = comp["test"]
        print(
            f"{name}: DS difference {t['diff']:.2f} (p = {t['p']:.3f}); this design detects a true difference of "
            f"{t['mde']:.1f} with 80% power"
        )
    print(f"report: {result.report_path}")
    print(f"next: automot study plan --from {args.out} --detect 2.0")
    return s


if __name__ == "__main__":
    main()
