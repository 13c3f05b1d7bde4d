"""Training stages: reproducibility, resume, frozen UE, head swap, strict checkpoints."""

import lightning as L
import pytest
import torch

from tests.training.fakes import FakeDataModule
from training.optim import OptimConfig
from training.policy import BackboneSpec, load_pretrained, load_weights, save_pretrained, with_head
from training.stages import ActionExpertStage, RefinerStage, UEPretrainStage

TINY_HEAD = {"refiner": {"dim": 32, "depth": 1, "moa": {"num_heads": 4}}}


def _trainer(max_steps, tmp_path=None, **kw):
    return L.Trainer(
        max_steps=max_steps,
        limit_val_batches=0,
        deterministic=True,
        logger=False,
        enable_checkpointing=tmp_path is not None,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kw,
    )


def _fit_ae(seed, steps=3, **stage_kw):
    L.seed_everything(seed, workers=True)
    stage = ActionExpertStage(backbone=BackboneSpec(seed=seed), optim=OptimConfig(warmup_steps=1), **stage_kw)
    _trainer(steps).fit(stage, datamodule=FakeDataModule(seed=0))
    return stage


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_same_seed_bit_identical_other_seed_different():
    a, b, c = _fit_ae(0), _fit_ae(0), _fit_ae(1)
    wa, wb, wc = _weights(a.ae), _weights(b.ae), _weights(c.ae)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_training_changes_the_ae_and_never_the_frozen_ue():
    L.seed_everything(0)
    stage = ActionExpertStage(optim=OptimConfig(warmup_steps=1))
    ae0, ue0 = _weights(stage.ae), {k: v.clone() for k, v in stage.ue.state_dict().items()}
    _trainer(3).fit(stage, datamodule=FakeDataModule())
    assert any(not torch.equal(ae0[k], v) for k, v in stage.ae.state_dict().items())
    assert all(torch.equal(ue0[k], v) for k, v in stage.ue.state_dict().items())


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            trainer.should_stop = True


@pytest.mark.parametrize("stop", [6, 8])  # mid-epoch (4 batches per epoch) and at an epoch end
def test_resume_from_a_mid_run_checkpoint_matches_an_uninterrupted_run(tmp_path, stop):
    from lightning.pytorch.callbacks import ModelCheckpoint

    full = _fit_ae(0, steps=12)
    L.seed_everything(0, workers=True)
    first = ActionExpertStage(backbone=BackboneSpec(seed=0), optim=OptimConfig(warmup_steps=1))
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=stop, save_top_k=-1)
    _trainer(12, tmp_path, callbacks=[ckpt, _StopAt(stop)]).fit(first, datamodule=FakeDataModule(seed=0))
    assert first.trainer.global_step == stop  # interrupted, same configuration as the full run
    path = next(tmp_path.glob(f"*step={stop}*.ckpt"))
    L.seed_everything(123, workers=True)  # the resumed process starts from another RNG state
    resumed = ActionExpertStage(backbone=BackboneSpec(seed=0), optim=OptimConfig(warmup_steps=1))
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "r", every_n_train_steps=stop)]
    _trainer(12, tmp_path / "r", callbacks=callbacks).fit(
        resumed, datamodule=FakeDataModule(seed=0), ckpt_path=path, weights_only=True
    )
    assert resumed.trainer.global_step == 12
    wf, wr = _weights(full.ae), _weights(resumed.ae)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    # A run that skipped the resume differs (the comparison can fail).
    assert any(not torch.equal(wf[k], v) for k, v in _weights(first.ae).items())


def test_ema_weights_are_used_for_export(tmp_path):
    L.seed_everything(0)
    stage = ActionExpertStage(
        optim=OptimConfig(warmup_steps=1, ema_decay=0.9), export_dir=str(tmp_path / "p")
    )
    _trainer(3).fit(stage, datamodule=FakeDataModule())
    exported = load_pretrained(tmp_path / "p").ae.state_dict()
    live = stage.ae.state_dict()
    ema_names = stage.ema._names
    assert any(not torch.equal(exported[n], live[n]) for n in ema_names)
    with stage.ema.swapped(stage.ae):
        assert all(torch.equal(exported[n], stage.ae.state_dict()[n]) for n in ema_names)


@pytest.fixture(scope="module")
def trained_policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "ae"
    stage = _fit_ae(0, steps=2)
    save_pretrained(stage.ae, path)
    return path


def test_head_swap_keeps_the_action_expert_weights_identical(trained_policy):
    mlp = RefinerStage(policy=str(trained_policy), head="mlp")
    diffusion = RefinerStage(policy=str(trained_policy), head="diffusion", head_kwargs=TINY_HEAD)
    wm = {k: v for k, v in mlp.ae.state_dict().items() if not k.startswith("head.")}
    wd = {k: v for k, v in diffusion.ae.state_dict().items() if not k.startswith("head.")}
    assert wm.keys() == wd.keys() and all(torch.equal(wm[k], wd[k]) for k in wm)
    # The diffusion head's prior is the trained MLP head.
    prior = {
        k[len("head.prior.") :]: v
        for k, v in diffusion.ae.state_dict().items()
        if k.startswith("head.prior.")
    }
    assert all(torch.equal(prior[k], mlp.ae.head.state_dict()[k]) for k in prior)
    # Refiner stage: only the refiner trains by default.
    trainable = {n for n, p in diffusion.ae.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.denoiser.") for n in trainable)


def test_refiner_stage_trains_only_the_refiner_and_exports_a_loadable_policy(trained_policy, tmp_path):
    L.seed_everything(0)
    stage = RefinerStage(
        policy=str(trained_policy), head_kwargs=TINY_HEAD, export_dir=str(tmp_path / "refined")
    )
    before = _weights(stage.ae)
    ue_before = {k: v.clone() for k, v in stage.ue.state_dict().items()}
    _trainer(3).fit(stage, datamodule=FakeDataModule())
    after = _weights(stage.ae)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.denoiser.") for k in changed)
    assert all(torch.equal(ue_before[k], v) for k, v in stage.ue.state_dict().items())  # the UE stays frozen
    loaded = load_pretrained(tmp_path / "refined").ae
    assert type(loaded.head).__name__ == "DiffusionHead"
    assert all(torch.equal(after[k], v) for k, v in loaded.state_dict().items())


def test_loading_into_another_head_or_preset_lists_the_mismatched_keys(trained_policy, tmp_path):
    ae = load_pretrained(trained_policy).ae
    with_head(ae, "diffusion", TINY_HEAD)
    with pytest.raises(ValueError, match=r"missing keys \['head.denoiser"):
        load_weights(ae, trained_policy)
    other = BackboneSpec(overrides={"ae": {"hidden_size": 32}}).build().ae
    with pytest.raises(ValueError, match=r"shape mismatches \[.*expected \(.*32.*got"):
        load_weights(other, trained_policy)
    with pytest.raises(ValueError, match=r"policy: expected a policy folder with mot_config.json"):
        load_pretrained(tmp_path / "nothing")


def test_ue_pretraining_learns_and_exports_a_frozen_ue(tmp_path):
    L.seed_everything(0)
    stage = UEPretrainStage(optim=OptimConfig(lr=3e-3, warmup_steps=1), export_dir=str(tmp_path / "ue"))
    dm = FakeDataModule(n=4, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        before = stage._loss(batch)[0].item()
    _trainer(25).fit(stage, datamodule=dm)
    stage.eval()
    with torch.no_grad():
        after = stage._loss(batch)[0].item()
    assert after < 0.5 * before
    # The exported UE loads frozen and its cache is the trained model's own computation.
    spec = BackboneSpec(ue_checkpoint=str(tmp_path / "ue"))
    bb = spec.build()
    assert not any(p.requires_grad for p in bb.ue._params)
    cache = bb.prefill(batch.sensors)
    inputs = bb.ue.encode(batch.sensors)
    with torch.no_grad():
        ref = stage.model.model(
            **{
                k: inputs[k]
                for k in (
                    "input_ids",
                    "attention_mask",
                    "position_ids",
                    "pixel_values",
                    "image_grid_thw",
                    "mm_token_type_ids",
                )
            }
        )
    mask = inputs["padding_mask"].bool()
    assert torch.allclose(cache.hidden[mask], ref.last_hidden_state[mask], atol=1e-5)


def test_differentiable_refiner_trains_the_ae_and_keeps_the_prior_trained(trained_policy):
    """fine_tune_ae=True: the refiner loss reaches the AE through a differentiable prior, and the prior's
    own L1 and the decision NLL stay in the loss; a frozen prior under a moving AE is refused."""
    L.seed_everything(0)
    stage = RefinerStage(policy=str(trained_policy), head_kwargs=TINY_HEAD, fine_tune_ae=True)
    head = stage.ae.head
    assert head.config.differentiable_prior and head.config.prior_loss_weight == 1.0
    batch = next(iter(FakeDataModule().train_dataloader()))
    parts = stage.losses(batch)
    assert {"prior_loss", "decision_nll"} <= set(parts)
    parts["loss"].backward()
    grads = {n: p.grad for n, p in stage.ae.named_parameters()}
    for prefix in ("head.prior.", "head.denoiser.", "layers."):
        assert any(
            g is not None and float(g.abs().sum()) > 0 for n, g in grads.items() if n.startswith(prefix)
        ), prefix
    with pytest.raises(ValueError, match=r"head_kwargs.differentiable_prior: expected True"):
        RefinerStage(
            policy=str(trained_policy),
            head_kwargs={**TINY_HEAD, "differentiable_prior": False},
            fine_tune_ae=True,
        )


def test_memoised_contexts_equal_fresh_ones_and_give_the_same_loss(trained_policy):
    """The refiner stage memoises the frozen AE's context per sample, computed for each unseen sample
    alone: a re-batched (re-padded) context gives the same refiner loss as a fresh one, and what is
    stored does not depend on which batch first met the sample (so a resumed run trains on the same bits)."""
    from training.context_memo import ContextMemo, split_context, stack_contexts
    from training.ue_memo import UEMemo

    stage = RefinerStage(policy=str(trained_policy), head_kwargs=TINY_HEAD)
    batches = list(FakeDataModule().train_dataloader())
    memo = ContextMemo()
    fresh = [stage.forward_ae(b, with_plan=False).context for b in batches]
    sizes = []

    def compute(sensors, keys):
        sizes.append(len(keys))
        return stage._frozen_context(sensors, keys)

    for b in batches:  # fill
        memo.get(b.sensors, UEMemo.sample_keys(b), compute)
    n = sum(b.waypoints.shape[0] for b in batches)
    assert memo.misses == n and memo.hits == 0 and sizes == [1] * n  # every unseen sample alone
    calls = []
    for b, ctx in zip(batches, fresh):
        got = memo.get(b.sensors, UEMemo.sample_keys(b), lambda *a: calls.append(1))
        assert not calls
        a = stage.ae.head.loss(ctx, stage.plan_target(b), generator=torch.Generator().manual_seed(0))["loss"]
        c = stage.ae.head.loss(got, stage.plan_target(b), generator=torch.Generator().manual_seed(0))["loss"]
        assert torch.allclose(a, c, atol=1e-6)
    # Another memo meeting the same samples in other batches stores bit-identical contexts.
    other = ContextMemo()
    b0 = batches[0]
    mixed = b0.sensors.select([1, 0])
    keys = [UEMemo.sample_keys(b0)[1], UEMemo.sample_keys(b0)[0]]
    got = other.get(mixed, keys, stage._frozen_context)
    want = memo.get(mixed, keys, lambda *a: calls.append(1))
    assert not calls and torch.equal(got.plan_latents, want.plan_latents)
    # Re-batching other samples together changes the padding, not the contexts.
    flipped = stack_contexts(split_context(fresh[0])[::-1])
    assert torch.equal(flipped.plan_latents, fresh[0].plan_latents.flip(0))


def test_after_short_training_every_moa_path_has_moved_and_reasoning_changes_the_plan(trained_policy):
    """The bypass gates and the decision lambda learn (they sit outside the blocks' zero gate), and a
    trained refiner's plan depends on the understanding expert's reasoning tokens."""
    import dataclasses

    L.seed_everything(0)
    stage = RefinerStage(
        policy=str(trained_policy), head_kwargs=TINY_HEAD, optim=OptimConfig(lr=3e-3, warmup_steps=1)
    )
    head = stage.ae.head
    names = ("gate_bev", "gate_reasoning", "decision_lambda")
    init = {n: p.detach().clone() for n, p in head.named_parameters() if n.endswith(names)}
    assert {n.rsplit(".", 1)[-1] for n in init} == set(names)
    _trainer(20).fit(stage, datamodule=FakeDataModule())
    moved = {n: float((p.detach() - init[n]).abs().max()) for n, p in head.named_parameters() if n in init}
    assert all(v > 1e-4 for v in moved.values()), moved

    batch = next(iter(FakeDataModule().val_dataloader()))
    stage.eval()
    with torch.no_grad():
        ctx = stage.forward_ae(batch, with_plan=False).context
        plan = head(ctx, generator=torch.Generator().manual_seed(0))
        no_reason = dataclasses.replace(ctx, reasoning_tokens=torch.zeros_like(ctx.reasoning_tokens))
        other = head(no_reason, generator=torch.Generator().manual_seed(0))
    assert float((plan.waypoints - other.waypoints).abs().max()) > 1e-5
    # The prior does not read the reasoning tokens: the difference is the refiner's.
    assert torch.equal(plan.prior_waypoints, other.prior_waypoints)


def test_a_policy_finds_its_relative_ue_folder_from_any_working_directory(tmp_path, monkeypatch):
    """A study hands stages a UE path relative to the working directory (`runs/demo/ue`); the policy
    folder also records it relative to itself, so the policy loads from elsewhere and after the study
    folder moves. A policy folder without that record (older ones) still resolves the path as given
    and, when that fails too, the error names both places."""
    import json
    import shutil

    from mot import QwenUEConfig, build_raw_qwen3vl, save_qwen3vl

    model, processor = build_raw_qwen3vl(QwenUEConfig(seed=3))
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)  # not what the preset builds in code
    monkeypatch.chdir(tmp_path)
    save_qwen3vl(model, processor, tmp_path / "study" / "ue")
    bb = BackboneSpec(ue_checkpoint="study/ue").build()
    policy = save_pretrained(bb.ae, "study/seeds/0/policy_mlp")
    meta = json.loads((policy / "mot_config.json").read_text())
    assert meta["config"]["ue"]["checkpoint"] == "study/ue"
    assert meta["ue_checkpoint_from_folder"] == "../../../ue"
    expected = [p.detach().clone() for p in bb.ue._params]

    def same_ue(backbone) -> bool:
        return len(backbone.ue._params) == len(expected) and all(
            torch.equal(p, q) for p, q in zip(backbone.ue._params, expected)
        )

    assert not same_ue(BackboneSpec().build())  # the check can fail: the in-code UE differs

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert same_ue(load_pretrained(tmp_path / "study" / "seeds" / "0" / "policy_mlp"))

    shutil.move(tmp_path / "study", tmp_path / "moved")  # the whole study folder moves
    moved = tmp_path / "moved" / "seeds" / "0" / "policy_mlp"
    assert same_ue(load_pretrained(moved))
    # A policy exported from the moved one (a refiner around it, from this working directory) names
    # the UE it was built with, so it loads from another working directory too.
    refined = save_pretrained(
        load_pretrained(moved).ae, tmp_path / "moved" / "seeds" / "0" / "policy_refined"
    )
    assert json.loads((refined / "mot_config.json").read_text())["ue_checkpoint_from_folder"] == "../../../ue"
    monkeypatch.chdir(tmp_path)
    assert same_ue(load_pretrained(refined))
    monkeypatch.chdir(elsewhere)

    del meta["ue_checkpoint_from_folder"]  # a policy folder from before the record existed
    (moved / "mot_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"expected its UE checkpoint folder at 'study/ue', found none"):
        load_pretrained(moved)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study").symlink_to(tmp_path / "moved")  # the path as given resolves again
    assert same_ue(load_pretrained(moved))

    # A study given an absolute UE path, then moved: the absolute path is gone, the policy's own
    # record still finds the UE beside it.
    absolute = tmp_path / "abs"
    save_qwen3vl(model, processor, absolute / "ue")
    bb = BackboneSpec(ue_checkpoint=str(absolute / "ue")).build()
    save_pretrained(bb.ae, absolute / "seeds" / "0" / "policy_mlp")
    shutil.move(absolute, tmp_path / "abs_moved")
    assert same_ue(load_pretrained(tmp_path / "abs_moved" / "seeds" / "0" / "policy_mlp"))


def test_refiner_stage_augments_the_ego_inputs_its_head_reads_and_weights_keyframes(trained_policy):
    """`augment`: the head's loss is its loss on the context with the ego inputs perturbed by the
    step's augmentation generator (the memoised context stays clean); `keyframe_weight`: the samples
    whose label changes speed weigh more, as in the AE stage."""
    import dataclasses

    from training.augment import EgoAugmentConfig, perturb_ego
    from training.keyframe import keyframe_weights
    from training.ue_memo import UEMemo

    batch = next(iter(FakeDataModule().train_dataloader()))
    braking = batch.waypoints.clone()
    braking[0] = batch.waypoints[0] * 0.5  # sample 0 slows down: a keyframe
    batch = dataclasses.replace(batch, waypoints=braking)
    config = EgoAugmentConfig(history_dropout=0.5, state_dropout=0.5, speed_noise_std=0.5)

    def stage(**kw):
        torch.manual_seed(0)  # the same refiner weights in both stages
        built = RefinerStage(policy=str(trained_policy), head_kwargs=TINY_HEAD, **kw)
        built.train_seed = 2**62 - 5  # the same training noise (seeds are drawn below 2**62)
        return built

    plain, augmented = stage(), stage(augment=dict(vars(config)), keyframe_weight=2.0)
    with torch.no_grad():
        clean = plain.context_memo.get(batch.sensors, UEMemo.sample_keys(batch), plain._frozen_context)
        state, history = perturb_ego(
            clean.ego_state, clean.ego_history, config, augmented._augment_generator()
        )
        assert not torch.equal(state, clean.ego_state) and not torch.equal(history, clean.ego_history)
        ctx = dataclasses.replace(clean, ego_state=state, ego_history=history)
        w = keyframe_weights(batch.sensors.ego_state[:, 0], braking, 2.0)
        assert w[0] > 1 and torch.all(w[1:] == 1)
        want = plain.ae.head.loss(
            ctx, plain.plan_target(batch), generator=plain.step_generator(), sample_weight=w
        )
        got = augmented.losses(batch)
        assert torch.allclose(got["loss"], want["loss"], atol=1e-6)
        assert not torch.allclose(got["loss"], plain.losses(batch)["loss"], atol=1e-4)
        again = augmented.context_memo.get(
            batch.sensors, UEMemo.sample_keys(batch), augmented._frozen_context
        )
        assert torch.equal(again.ego_state, clean.ego_state)  # the memo keeps the clean context
    with pytest.raises(ValueError, match=r"RefinerStage.keyframe_weight: expected a number >= 0"):
        stage(keyframe_weight=-1.0)


def test_a_study_hands_its_refiner_options_to_the_refiner_stage(tmp_path, monkeypatch):
    from studies import tasks
    from studies.config import load_study_config

    with pytest.raises(ValueError, match=r"StudyConfig.refiner_keyframe_weight: expected a value >= 0"):
        load_study_config("smoke", {"refiner_keyframe_weight": -1})
    config = load_study_config(
        "smoke", {"refiner_augment": {"history_dropout": 0.25}, "refiner_keyframe_weight": 1.5}
    )
    seen = {}

    class Built(Exception):
        pass

    def fake_stage(**kwargs):
        seen.update(kwargs)
        raise Built

    monkeypatch.setattr("training.stages.RefinerStage", fake_stage)
    with pytest.raises(Built):
        tasks._refine(tmp_path, config, 0, "diffusion", tasks.StatusWriter(tmp_path, "r", "refine"))
    assert seen["augment"] == {"history_dropout": 0.25} and seen["keyframe_weight"] == 1.5
