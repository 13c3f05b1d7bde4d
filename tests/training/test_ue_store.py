"""The UE store: what a task reads from disk is the bits it would have computed, samples of another
shard or another UE never share a cache, and a fit with the store trains to the same weights."""

import shutil

import lightning as L
import pytest
import torch

from driving.dataset import collate
from mot.cache import UECache
from tests.training.fakes import FakeDataModule, FakeDataset
from training.optim import OptimConfig
from training.policy import BackboneSpec, save_pretrained
from training.stages import ActionExpertStage, RefinerStage
from training.ue_memo import SampleKey, UEMemo
from training.ue_store import UEStore


def _tensors(c: UECache) -> list[torch.Tensor]:
    return [*c.keys, *c.values, c.hidden, c.mask, c.position_offset]


def _equal(a: UECache, b: UECache) -> bool:
    same = [
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)
        for x, y in zip(_tensors(a), _tensors(b))
    ]
    return all(same) and (a.step, a.time_s, a.generation) == (b.step, b.time_s, b.generation)


def _batch(shard: str | None, n: int = 6):
    items = [FakeDataset(n, shard=shard)[i] for i in range(n)]
    for i, item in enumerate(items):  # prompts of three lengths
        item["prompt"] += " keep the lane ." * (i % 3)
    return collate(items)


@pytest.fixture(scope="module")
def ue():
    return BackboneSpec(seed=0).build().ue


def test_a_stored_cache_reads_back_bit_for_bit(ue, tmp_path):
    g = torch.Generator().manual_seed(0)
    kv = lambda: torch.randn(1, 2, 5, 4, generator=g)  # noqa: E731
    cache = UECache(
        keys=(kv(), kv()),
        values=(kv(), kv()),
        hidden=torch.randn(1, 5, 8, generator=g),
        mask=torch.tensor([[True] * 5]),
        position_offset=torch.tensor([7]),
        step=3,
        time_s=0.1 * 3,  # not a short decimal: stored exactly
        generation=2,
        reasoning_mask=torch.tensor([[False, False, False, True, True]]),
        reasoning_text=("slow down .",),
    )
    store = UEStore(tmp_path, ue)
    key = SampleKey("highway", 4, 3, 3, shard="ab" * 32)
    assert store.get(key) is None
    store.put(key, cache)
    back = store.get(key)
    assert _equal(back, cache) and back.time_s == 0.1 * 3
    assert torch.equal(back.reasoning_mask, cache.reasoning_mask) and back.reasoning_text == ("slow down .",)
    with pytest.raises(ValueError, match="one-sample"):
        store.put(key, UECache.stack([cache, cache]))


def test_a_memo_with_a_store_reads_instead_of_prefilling_and_gets_the_same_bits(ue, tmp_path):
    batch = _batch("s0")
    keys = UEMemo.sample_keys(batch)
    assert keys[0].shard == "s0"
    with torch.no_grad():
        plain = UEMemo(ue).prefill(batch.sensors, keys)
        writer = UEMemo(ue, store=UEStore(tmp_path, ue))
        written = writer.prefill(batch.sensors, keys)
        calls = ue.prefill_calls
        reader = UEMemo(ue, store=UEStore(tmp_path, ue))  # another task: an empty memory, the same disk
        read = reader.prefill(batch.sensors, keys)
    assert (writer.store.writes, reader.store.reads, reader.store.writes) == (6, 6, 0)
    assert ue.prefill_calls == calls  # nothing prefilled again
    assert len({c.seq_len for c in reader._store.values()}) == 3  # padded batches were assembled
    assert _equal(written, plain) and _equal(read, plain)


def test_another_shard_another_ue_or_another_thread_count_never_shares_a_cache(ue, tmp_path):
    with torch.no_grad():
        UEMemo(ue, store=UEStore(tmp_path, ue)).prefill(
            _batch("s0").sensors, UEMemo.sample_keys(_batch("s0"))
        )
        other_shard = UEMemo(ue, store=UEStore(tmp_path, ue))
        other_shard.prefill(
            _batch("s1").sensors, UEMemo.sample_keys(_batch("s1"))
        )  # same scenario/seed/steps
    assert (other_shard.store.reads, other_shard.store.writes) == (0, 6)
    assert BackboneSpec(seed=0).build().ue.fingerprint() == ue.fingerprint()  # built again: the same
    other = BackboneSpec(seed=0).build().ue
    with torch.no_grad():
        next(other._model.parameters()).view(-1)[0] += 1e-6  # one weight, slightly
    assert other.fingerprint() != ue.fingerprint()
    store = UEStore(tmp_path, ue)
    here, threads = store.folder, torch.get_num_threads()
    try:
        torch.set_num_threads(3 - min(threads, 2))  # 1 <-> 2: a matmul's last bits may change
        elsewhere = store.folder
    finally:
        torch.set_num_threads(threads)
    assert elsewhere != here and store.folder == here


def test_samples_without_a_shard_are_not_stored_and_a_misnamed_file_is_refused(ue, tmp_path):
    batch = _batch(None)
    keys = UEMemo.sample_keys(batch)
    memo = UEMemo(ue, store=UEStore(tmp_path, ue))
    with torch.no_grad():
        memo.prefill(batch.sensors, keys)
    assert keys[0].shard is None and memo.misses == 6 and memo.store.writes == 0
    with pytest.raises(ValueError, match="naming its shard"):
        memo.store.path(keys[0])
    store = UEStore(tmp_path, ue)
    with torch.no_grad():
        UEMemo(ue, store=store).prefill(_batch("s0").sensors, UEMemo.sample_keys(_batch("s0")))
    a, b = UEMemo.sample_keys(_batch("s0"))[:2]
    shutil.copy(store.path(a), store.path(b))
    with pytest.raises(ValueError, match=r"expected the cache of sample \['s0', 1, 1\], got \['s0', 0, 0\]"):
        store.get(b)


def test_a_refiner_fit_with_the_store_trains_the_weights_of_one_without(tmp_path):
    """A study's refiner reads the caches its AE's tasks stored: the trained weights are those of a
    fit that prefilled everything itself (the first fit writes the store, the second reads it)."""
    trainer = dict(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0, accelerator="cpu", deterministic=True)  # fmt: skip
    L.seed_everything(0, workers=True)
    ae = ActionExpertStage(backbone=BackboneSpec(seed=0), optim=OptimConfig(warmup_steps=1))
    L.Trainer(max_steps=2, **{k: v for k, v in trainer.items() if k != "max_steps"}).fit(
        ae, datamodule=FakeDataModule(shard="s0")
    )
    policy = save_pretrained(ae.ae, tmp_path / "policy_mlp")
    head = {"refiner": {"dim": 32, "depth": 1, "moa": {"num_heads": 4}}}
    weights = []
    for store in (None, tmp_path / "store", tmp_path / "store"):
        L.seed_everything(0, workers=True)
        stage = RefinerStage(
            policy=str(policy), head_kwargs=head, optim=OptimConfig(warmup_steps=1), ue_store=store
        )
        L.Trainer(**trainer).fit(stage, datamodule=FakeDataModule(shard="s0"))
        weights.append({k: v.detach().clone() for k, v in stage.ae.head.state_dict().items()})
        if store is not None:
            assert (stage.ue_memo.store.reads, stage.ue_memo.store.writes) in ((0, 16), (16, 0))
    assert stage.ue_memo.store.reads == 16  # the last fit read every sample
    assert all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])


def test_the_store_stops_writing_at_its_size_limit_or_near_a_full_disk_and_changes_no_bit(ue, tmp_path):
    batch = _batch("s0")
    keys = UEMemo.sample_keys(batch)
    with torch.no_grad():
        plain = UEMemo(ue).prefill(batch.sensors, keys)
        one = UEStore(tmp_path / "probe", ue)
        UEMemo(ue, store=one).prefill(batch.sensors.select([0]), keys[:1])
        file_size = one.path(keys[0]).stat().st_size
        limited = UEStore(tmp_path / "a", ue, max_bytes=3 * file_size + file_size // 2)
        written = UEMemo(ue, store=limited).prefill(batch.sensors, keys)
        assert (limited.writes, limited.skipped) == (3, 3)
        assert sorted(p.name for p in limited.folder.iterdir()) == sorted(
            limited.path(k).name for k in keys[:3]
        )
        # Another task on the same folder looks at what is there first: no room left for a fourth.
        later = UEStore(tmp_path / "a", ue, max_bytes=3 * file_size + file_size // 2)
        reader = UEMemo(ue, store=later)
        read = reader.prefill(batch.sensors, keys)
        assert (later.reads, later.writes, later.skipped) == (3, 0, 3)
        # A write that would leave less than `min_free_bytes` on the disk is skipped.
        full_disk = UEStore(tmp_path / "b", ue, min_free_bytes=1 << 62)
        UEMemo(ue, store=full_disk).prefill(batch.sensors, keys)
        assert (full_disk.writes, full_disk.skipped) == (0, 6) and not (tmp_path / "b").exists()
    assert _equal(written, plain) and _equal(read, plain)
    with pytest.raises(ValueError, match=r"UEStore\.max_bytes: expected >= 0 or None, got -1"):
        UEStore(tmp_path, ue, max_bytes=-1)
