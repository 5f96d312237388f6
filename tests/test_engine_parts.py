"""Engine parts that need no SAM: variant dataset, embedding cache, resume and best-model handlers, mixing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.transforms import Compose, RandGaussianNoised

from monai_fetal.config_checks import check_choice, check_positive
from monai_fetal.data.cohort import CohortItem, write_cohort_index, write_pair
from monai_fetal.data.mixing import load_cohort_items, mix_real_synthetic
from monai_fetal.engines import AugmentationVariantDataset, BestModelSaver, ResumableCheckpointSaver, ResumeHandler, latest_checkpoint
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.networks.embedding_cache import EmbeddingCache, module_fingerprint


def test_variants_repeat_exactly_across_epochs_and_differ_between_variants():
    data = [{"id": f"c{i}", "image": torch.zeros(1, 8, 8)} for i in range(3)]
    noise = Compose([RandGaussianNoised("image", prob=1.0, std=1.0)])
    dataset = AugmentationVariantDataset(data, noise, variants=4, seed=1)
    assert len(dataset) == 12
    first = [dataset[k]["image"].clone() for k in range(12)]
    again = [dataset[k]["image"] for k in range(12)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])
    other_seed = AugmentationVariantDataset(data, noise, variants=4, seed=2)
    assert not torch.equal(other_seed[0]["image"], first[0])
    with pytest.raises(ValueError, match="variants"):
        AugmentationVariantDataset(data, noise, variants=0)


def test_embedding_cache_encodes_each_content_once_and_persists(tmp_path):
    calls = []

    def encoder(images):
        calls.append(len(images))
        return images.mean(dim=1, keepdim=True).repeat(1, 2, 1, 1)

    images = torch.rand(3, 3, 4, 4)
    cache = EmbeddingCache(tmp_path, "enc")
    first = cache.encode(images, encoder)
    second = cache.encode(images[[2, 0]], encoder)
    assert calls == [3]
    assert torch.equal(second, first[[2, 0]])
    assert (cache.hits, cache.misses) == (2, 3)
    assert len(list((tmp_path / "enc").glob("*.pt"))) == 3
    fresh = EmbeddingCache(tmp_path, "enc", memory_items=1)
    assert torch.equal(fresh.encode(images, encoder), first)
    assert calls == [3]
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5
    fresh.encode(changed, encoder)
    assert calls == [3, 1]
    assert torch.allclose(first, encoder(images).half().float())


def test_module_fingerprint_follows_weights():
    net = torch.nn.Linear(2, 2)
    before = module_fingerprint(net)
    with torch.no_grad():
        net.weight += 1
    assert module_fingerprint(net) != before
    assert module_fingerprint(net, "a") != module_fingerprint(net, "b")


def _toy_training(tmp_path, max_epochs, stop_at=None):
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def step(engine, batch):
        opt.zero_grad()
        loss = (net(batch) - 1).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    trainer = Engine(step)
    evaluator = Engine(lambda e, b: None)
    best = BestModelSaver(net, tmp_path / "model.pt", "score")

    @evaluator.on(Events.EPOCH_COMPLETED)
    def score(engine):
        engine.state.metrics["score"] = -abs(net.weight.item() + net.bias.item() - 1)

    best.attach(evaluator)
    save_dict = {"network": net, "optimizer": opt, "trainer": trainer, "best": best}
    ResumeHandler(tmp_path, save_dict).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    ResumableCheckpointSaver(str(tmp_path), save_dict, save_interval=1, n_saved=1, epoch_level=True).attach(trainer)
    if stop_at is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=stop_at), lambda e: e.terminate())
    trainer.run([torch.ones(1)] * 4, max_epochs=max_epochs)
    return trainer, best


def test_resume_continues_from_last_epoch_and_keeps_best(tmp_path):
    torch.manual_seed(0)
    trainer, best = _toy_training(tmp_path, max_epochs=5, stop_at=2)
    assert trainer.state.epoch == 2
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=2.pt"
    best_before = best.best
    resumed, best_after = _toy_training(tmp_path, max_epochs=5)
    assert resumed.state.epoch == 5
    assert [p.name for p in tmp_path.glob("checkpoint_*")] == ["checkpoint_epoch=5.pt"]  # not the first run's epoch 2
    assert best_after.best >= best_before
    assert math.isfinite(best_after.best)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}


def test_latest_checkpoint_is_none_without_files(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None


def _cohort(root, name, n, synthetic=False):
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12] = 1
        write_pair(root, f"{name}{i}", rng.integers(0, 255, (16, 16), dtype=np.uint8), mask)
        items.append(CohortItem(f"{name}{i}", f"{name}{i}", name, synthetic=synthetic))
    write_cohort_index(root, items, name)
    return root


def test_mixing_draws_the_ratio_of_synthetic_items(tmp_path):
    real = load_cohort_items(_cohort(tmp_path / "real", "r", 4))
    synthetic_dir = _cohort(tmp_path / "syn", "s", 10, synthetic=True)
    assert mix_real_synthetic(real, "", 2.0) == real
    mixed = mix_real_synthetic(real, synthetic_dir, 2.0, seed=3)
    assert len(mixed) == 12 and sum(bool(i.get("synthetic")) for i in mixed) == 8
    assert mixed == mix_real_synthetic(real, synthetic_dir, 2.0, seed=3)
    assert len(mix_real_synthetic(real, synthetic_dir, -1)) == 14
    assert all(item["image"].startswith(str(tmp_path)) for item in mixed)
    with pytest.raises(InputDataError, match="prepare the cohort"):
        mix_real_synthetic(real, tmp_path / "nowhere", 1.0)
    with pytest.raises(ConfigError, match="synthetic_ratio"):
        mix_real_synthetic(real, synthetic_dir, "lots")


def test_config_checks_name_the_key():
    assert check_choice("prompt", "auto", ["gt_box", "auto"]) == "auto"
    with pytest.raises(ConfigError, match="'prompt'.*'gt_box', 'auto'"):
        check_choice("prompt", "box", ["gt_box", "auto"])
    assert check_positive("lr", 0.1) == 0.1
    with pytest.raises(ConfigError, match="'lr'"):
        check_positive("lr", 0)
    with pytest.raises(ConfigError):
        check_positive("lr", True)
    assert json.dumps(check_positive("n", 0, allow_zero=True)) == "0"


def test_best_model_saver_skips_the_baseline_epoch_and_other_ranks(tmp_path):
    net = torch.nn.Linear(1, 1)
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_dice": 0.9}
    engine.state.epoch = 0
    saver = BestModelSaver(net, tmp_path / "model.pt", "val_dice")
    saver(engine)
    assert not (tmp_path / "model.pt").exists() and saver.best_epoch == -1
    engine.state.epoch = 1
    silent = BestModelSaver(net, tmp_path / "model.pt", "val_dice", write=False)
    silent(engine)
    assert not (tmp_path / "model.pt").exists() and silent.best_epoch == 1
    saver(engine)
    assert set(torch.load(tmp_path / "model.pt", weights_only=True)) == {"weight", "bias"}


def test_resume_from_a_checkpoint_of_another_configuration_names_it(tmp_path):
    small, large = torch.nn.Linear(1, 1), torch.nn.Linear(2, 1)
    torch.save({"network": small.state_dict()}, tmp_path / "checkpoint_epoch=1.pt")
    engine = Engine(lambda e, b: None)
    ResumeHandler(tmp_path, {"network": large}).attach(engine)
    with pytest.raises(InputDataError, match=r"checkpoint_epoch=1.pt.*cannot be resumed.*new output folder"):
        engine.run([0], max_epochs=1)
