"""The latent action model on planted actions: which FDM pieces make the codes mean the action.

    python examples/latent_toy_ablation.py --steps 300

Four FDMs (residual decoder only or with the code -> rigid-motion warp; reconstruction at full
resolution only or also between 2x / 4x average-pooled frames) trained the same way on fresh toy
transitions (`latent.toy`); for each: codebook perplexity, entries in use, and a linear probe's
accuracy at reading the planted action back from the codes (docs/latent.md has the measured table).
"""

import argparse

import torch

from latent.config import LAMConfig, VQConfig
from latent.lam import LatentActionModel
from latent.toy import planted_scores, train_on_planted


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="model seed")
    args = parser.parse_args(argv)
    print("| FDM | scales | perplexity | entries used | probe accuracy | majority |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for warp in (False, True):
        for scales in ((1,), (1, 2, 4)):
            config = LAMConfig(
                width=32, depth=1, num_heads=4, downsamples=2, warp=warp, recon_scales=scales, seed=args.seed,
                vq=VQConfig(code_dim=16, restart_every=50),
            )  # fmt: skip
            s = planted_scores(train_on_planted(LatentActionModel(config, (16, 16)), args.steps))
            name = "residual + warp" if warp else "residual only"
            rows[(name, scales)] = s
            print(
                f"| {name} | {scales} | {s['perplexity']:.2f} | {round(16 * s['usage'])} / 16 | "
                f"{100 * s['probe']['accuracy']:.1f} % | {100 * s['probe']['majority']:.1f} % |"
            )
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
