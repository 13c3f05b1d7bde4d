"""Shared test settings: deterministic CPU torch, few threads (CI has 2 cores)."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

torch.set_num_threads(min(2, torch.get_num_threads()))
