"""Held-out quality of a latent action model saved mid-training by a latent study (its Lightning
checkpoint), before the study's own `lam_quality` task: codebook perplexity and usage,
reconstruction MSE against the copy-the-current-frame baseline, and the linear probe of the codes
against the true meta-actions (fitted on one labeled split, scored on another).

    python examples/lam_checkpoint_quality.py runs/latent_lean2 --ckpt runs/latent_lean2/work/lam/last.ckpt \
        --probe-train val --eval test --out runs/latent_lean2/lam_quality_step200.json
"""

import argparse
import json
from pathlib import Path

import torch

from automot.io import write_json_atomic
from latent.config import LAMConfig
from latent.lam import LatentActionModel
from latent.quality import lam_quality


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--probe-train", default="val", help="labeled split the probe is fitted on")
    parser.add_argument("--eval", default="test", help="held-out split (codes, reconstruction, probe score)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    lam_config = LAMConfig.from_dict(json.loads((args.study / "study.json").read_text())["latent"]["lam"])
    weights = {k[len("lam.") :]: v for k, v in state["state_dict"].items() if k.startswith("lam.")}
    data = args.study / "data"
    image = tuple(json.loads((data / args.eval / "index.json").read_text())["dims"][k] for k in ("Hb", "Wb"))
    lam = LatentActionModel(lam_config, image)
    lam.load_state_dict(weights, strict=True)
    result = lam_quality(
        lam, data / args.eval, probe_train_dirs=data / args.probe_train, probe_eval_dirs=data / args.eval
    )
    result["step"] = int(state["global_step"])
    write_json_atomic(args.out, result)
    keys = ("step", "transitions", "codebook", "recon_mse", "copy_mse", "recon_over_copy")
    print(json.dumps({k: result[k] for k in keys}))
    print(json.dumps(result.get("probe")))
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
