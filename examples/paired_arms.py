"""Compare training recipes ("arms") closed loop, paired on the same training seeds and test episodes
(the tables of docs/on-policy-study.md).

Each arm is a study folder run with the same data, protocol and training seeds (e.g. the demo, and the
demo with `augment` or `dagger` set). Per arm: DS per scenario, the mean ± sd of the training seeds' DS,
outcome counts and mean speeds; per arm against the first: the paired DS difference per training seed, a
95 % t-interval over the seeds and t-tests on the seed means and on the episodes.

    python examples/paired_arms.py bc=runs/demo dropout=runs/arms/aug dagger=runs/arms/dagger --head mlp
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

SCENARIOS = ("highway", "merge", "roundabout", "intersection")
OUTCOMES = ("completed", "collision", "offroad", "timeout")


def episodes(study: Path, head: str, sampling_seed: int) -> dict[tuple[int, str, int], dict]:
    """{(training seed, scenario, test seed): episode record} of every run of `head` in the study."""
    found = {}
    for path in sorted((study / "runs").glob(f"{head}__t*__s{sampling_seed}.episodes.jsonl")):
        training_seed = int(path.name.split("__t")[1].split("__")[0])
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[(training_seed, record["scenario"], int(record["seed"]))] = record
    if not found:
        raise SystemExit(f"{study}: expected runs/{head}__t*__s{sampling_seed}.episodes.jsonl, found none")
    return found


def describe(name: str, arm: dict) -> str:
    seeds = sorted({k[0] for k in arm})
    seed_ds = [np.mean([r["score"] for k, r in arm.items() if k[0] == t]) for t in seeds]
    per_scenario = [np.mean([r["score"] for k, r in arm.items() if k[1] == s] or [np.nan]) for s in SCENARIOS]
    speeds = [
        np.mean([r["extra"]["mean_speed"] for k, r in arm.items() if k[1] == s] or [np.nan])
        for s in SCENARIOS
    ]
    counts = [sum(r["outcome"] == o for r in arm.values()) for o in OUTCOMES]
    sd = np.std(seed_ds, ddof=1) if len(seed_ds) > 1 else 0.0
    return (
        f"| {name} | " + " | ".join(f"{x:.1f}" for x in per_scenario)
        + f" | {np.mean(seed_ds):.2f} ± {sd:.2f} | " + " / ".join(f"{x:.1f}" for x in seed_ds)
        + f" | {' / '.join(map(str, counts))} of {len(arm)} | " + " / ".join(f"{x:.1f}" for x in speeds) + " |"
    )  # fmt: skip


def compare(name: str, arm: dict, base: dict) -> str:
    keys = sorted(set(arm) & set(base))
    if not keys:
        raise SystemExit(f"{name}: expected episodes shared with the first arm, found none")
    diff = np.array([arm[k]["score"] - base[k]["score"] for k in keys])
    seeds = sorted({k[0] for k in keys})
    by_seed = np.array(
        [np.mean([arm[k]["score"] - base[k]["score"] for k in keys if k[0] == t]) for t in seeds]
    )
    line = f"| {name} | {diff.mean():+.1f} | " + " / ".join(f"{x:+.1f}" for x in by_seed)
    if len(by_seed) > 2:
        half = stats.t.ppf(0.975, len(by_seed) - 1) * by_seed.std(ddof=1) / np.sqrt(len(by_seed))
        p_seeds = stats.ttest_1samp(by_seed, 0.0).pvalue
        line += f" | [{by_seed.mean() - half:+.1f}, {by_seed.mean() + half:+.1f}] | {p_seeds:.3f} / "
    else:
        line += " | – | – / "
    line += f"{stats.ttest_1samp(diff, 0.0).pvalue:.3f} ({len(diff)} episodes) | "
    line += " | ".join(
        f"{np.mean([d for d, k in zip(diff, keys) if k[1] == s] or [np.nan]):+.1f}" for s in SCENARIOS
    )
    return line + " |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="+", help="NAME=STUDY_FOLDER; the first is the reference")
    parser.add_argument("--head", default="mlp")
    parser.add_argument("--sampling-seed", type=int, default=0)
    args = parser.parse_args(argv)
    arms = {}
    for item in args.arms:
        name, sep, folder = item.partition("=")
        if not sep:
            raise SystemExit(f"arms: expected NAME=STUDY_FOLDER, got {item!r}")
        arms[name] = episodes(Path(folder), args.head, args.sampling_seed)
    print("| arm | " + " | ".join(SCENARIOS) + " | DS (mean ± sd of seeds) | per training seed | "
          + " / ".join(OUTCOMES) + " | mean speed per scenario |")  # fmt: skip
    print("|---" * 9 + "|")
    for name, arm in arms.items():
        print(describe(name, arm))
    (first, base), *others = arms.items()
    if others:
        print(f"\n| arm - {first} | DS | per training seed | 95 % CI over seeds | t-test p: seed means / episodes | "
              + " | ".join(SCENARIOS) + " |")  # fmt: skip
        print("|---" * 9 + "|")
        for name, arm in others:
            print(compare(name, arm, base))


if __name__ == "__main__":
    main()
