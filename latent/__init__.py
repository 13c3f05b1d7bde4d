"""Latent actions learned without labels, latent-action pretraining targets and the distilled
UE-free student (after LatentVLA, arXiv 2601.05611; public recipes of UniVLA and LAPA).

    lam = LatentActionModel(LAMConfig(), image_size=(64, 64))   # IDM -> VQ codes -> FDM
    codes = lam.codes(bev_t, bev_t_plus_1s)                      # (B, M) latent actions
    TransitionDataset(root, offsets_s=(1.0,), labels=False)      # observations only, labels never read
    StudentPlanner(StudentConfig(...))                           # BEV CNN + transformer decoder, no UE

Modules: `config` (LAMConfig, VQConfig), `observations` (what a LAM sees, a registry), `vq` (the
quantiser), `blocks` (conv stem / upsampler), `lam` (the model, save / load), `data` and
`datamodule` (transitions of collected datasets), `latent_head` (codes predicted from latents),
`probe` and `quality` (analysis), `toy` (planted actions), `student`, `policy` (the student in closed
loop), `bench` (latency). The training stages are in `training.stages`; docs/latent.md has the
measurements and which parts follow LatentVLA's description.
"""
