"""Train an MLP head and a diffusion head on the synthetic trajectory task and compare their L2.

    python examples/synthetic_heads.py --seconds 30

The diffusion head is built around the trained MLP head (its prior, frozen) and refines its plan
using the BEV tokens, decision latents and ego state the MLP head does not read.
"""

import argparse

from training.synthetic import compare_heads, format_table


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="training wall time per head")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = compare_heads(args.seconds, args.seed)
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
