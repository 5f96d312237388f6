"""Engine parts that need no SAM: variant dataset, embedding cache, resume and best-model handlers, mixing."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.transforms import Compose, RandGaussianNoised

from monai_fetal.config_checks import check_choice, check_positive
from monai_fetal.data.cohort import Cohort, CohortItem, write_pair
from monai_fetal.data.mixing import mix_real_synthetic
from monai_fetal.engines import AugmentationVariantDataset, ResumableCheckpointSaver, ResumeHandler, SamPrepareBatch, latest_checkpoint
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


def test_variant_cache_skips_the_transform_after_the_first_epoch_within_its_bound():
    data = [{"id": f"c{i}", "image": torch.zeros(1, 8, 8)} for i in range(3)]
    calls = []

    class CountedNoise(Compose):
        def __call__(self, item, *args, **kwargs):
            calls.append(item["id"])
            return super().__call__(item, *args, **kwargs)

    jitter = Compose([RandGaussianNoised("image", prob=1.0, std=0.1)])
    dataset = AugmentationVariantDataset(
        data, CountedNoise([RandGaussianNoised("image", prob=1.0, std=1.0)]), variants=2, post_transform=jitter, cache_items=4
    )
    uncached = AugmentationVariantDataset(data, Compose([RandGaussianNoised("image", prob=1.0, std=1.0)]), variants=2, cache_items=0)
    items = [dataset[k] for k in range(6)]
    first = [item["image"].clone() for item in items]
    items[0]["image"].add_(100.0)  # a caller's in-place change must not reach the cache
    again = [dataset[k]["image"] for k in range(6)]
    assert len(calls) == 6 + 2  # indices 4 and 5 lie beyond the bound: transformed again
    assert all(0.0 < (a - b).abs().max() < 1.0 for a, b in zip(first, again))  # the same variant, fresh jitter
    assert torch.equal(dataset._variant(3)["image"], uncached[3]["image"])
    with pytest.raises(ValueError, match="cache_items"):
        AugmentationVariantDataset(data, jitter, cache_items=-1)


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
    best = _best_model_saver(tmp_path, net, "score")

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


def _best_model_saver(folder, net, metric):
    """The train config's best-model saver: MONAI's key-metric ``CheckpointSaver`` writing ``model.pt``."""
    return ResumableCheckpointSaver(
        str(folder), {"network": net}, save_key_metric=True, key_metric_name=metric, key_metric_filename="model.pt"
    )


def _best(saver) -> float:
    return max(priority for priority, _ in saver.state_dict()["_saved"])


def test_resume_continues_from_last_epoch_and_keeps_best(tmp_path):
    torch.manual_seed(0)
    trainer, best = _toy_training(tmp_path, max_epochs=5, stop_at=2)
    assert trainer.state.epoch == 2
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=2.pt"
    best_before = _best(best)
    model_before = torch.load(tmp_path / "model.pt", weights_only=True)
    resumed, best_after = _toy_training(tmp_path, max_epochs=5)
    assert resumed.state.epoch == 5
    assert [p.name for p in tmp_path.glob("checkpoint_*")] == ["checkpoint_epoch=5.pt"]  # not the first run's epoch 2
    assert math.isfinite(_best(best_after)) and _best(best_after) >= best_before
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}
    if _best(best_after) == best_before:  # the resumed run found no better model: the first run's is kept
        assert all(torch.equal(state[k], model_before[k]) for k in state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=5.pt", "model.pt"]  # atomic: no temporary file left


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
    Cohort.write(root, items, name)
    return root


def test_mixing_draws_the_ratio_of_synthetic_items(tmp_path):
    real = Cohort(_cohort(tmp_path / "real", "r", 4)).items()
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


def test_best_model_saver_skips_the_baseline_epoch_nan_and_other_ranks(tmp_path, monkeypatch):
    import ignite.distributed as idist

    net = torch.nn.Linear(1, 1)
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"val_dice": 0.9}
    engine.state.epoch = 0
    saver = _best_model_saver(tmp_path, net, "val_dice")
    saver.metrics_completed(engine)
    assert not (tmp_path / "model.pt").exists() and saver.state_dict()["_saved"] == []
    engine.state.epoch, engine.state.metrics = 1, {"val_dice": math.nan}
    saver.metrics_completed(engine)
    assert not (tmp_path / "model.pt").exists() and saver.state_dict()["_saved"] == []
    engine.state.metrics = {"val_dice": 0.9}
    with monkeypatch.context() as patch:
        patch.setattr(idist, "get_rank", lambda: 1)
        silent = _best_model_saver(tmp_path, net, "val_dice")
        silent.metrics_completed(engine)
    assert not (tmp_path / "model.pt").exists() and _best(silent) == 0.9
    saver.metrics_completed(engine)
    assert set(torch.load(tmp_path / "model.pt", weights_only=True)) == {"weight", "bias"}
    with torch.no_grad():
        net.weight += 1
    engine.state.epoch, engine.state.metrics = 2, {"val_dice": 0.8}
    saver.metrics_completed(engine)  # worse: model.pt keeps the epoch-1 network
    assert not torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight)
    engine.state.epoch, engine.state.metrics = 3, {"val_dice": 0.95}
    saver.metrics_completed(engine)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_best_model_is_replaced_never_removed(tmp_path, monkeypatch):
    """A better model replaces ``model.pt`` by a rename: there is no moment without one (MONAI removes it first)."""
    from ignite.handlers import DiskSaver

    net = torch.nn.Linear(1, 1)
    engine = Engine(lambda e, b: None)
    saver = _best_model_saver(tmp_path, net, "val_dice")
    seen = []
    original = DiskSaver._save_func

    def save(self, checkpoint, path, func):
        seen.append((tmp_path / "model.pt").exists())
        original(self, checkpoint, path, func)

    monkeypatch.setattr(DiskSaver, "_save_func", save)
    for epoch, dice in ((1, 0.5), (2, 0.7)):
        engine.state.epoch, engine.state.metrics = epoch, {"val_dice": dice}
        saver.metrics_completed(engine)
    assert seen == [False, True]


def test_sam_prepare_batch_passes_the_box_and_no_box_without_one():
    image, label, box = torch.rand(2, 3, 8, 8), torch.ones(2, 1, 8, 8), torch.tensor([[0.0, 1, 5, 6], [1, 1, 7, 7]])
    prepared = SamPrepareBatch()({"image": image, "label": label, "box": box})
    assert prepared[0] is image and prepared[1] is label and prepared[2] == () and torch.equal(prepared[3]["boxes"], box)
    image_only, no_label, args, kwargs = SamPrepareBatch()({"image": image})
    assert image_only is image and no_label is None and args == () and kwargs == {}


def test_resume_from_a_checkpoint_of_another_configuration_names_it(tmp_path):
    small, large = torch.nn.Linear(1, 1), torch.nn.Linear(2, 1)
    torch.save({"network": small.state_dict()}, tmp_path / "checkpoint_epoch=1.pt")
    engine = Engine(lambda e, b: None)
    ResumeHandler(tmp_path, {"network": large}).attach(engine)
    with pytest.raises(InputDataError, match=r"checkpoint_epoch=1.pt.*cannot be resumed.*new output folder"):
        engine.run([0], max_epochs=1)


def test_evaluation_report_writes_per_image_csv_and_metrics_json(tmp_path):
    """The ``MetricsSaver`` subclass keeps the report users read: one CSV row per image, summary with failures."""
    import csv

    from monai_fetal.engines import EvaluationReportWriter

    batches = [[{"id": "a"}, {"id": "b"}], [{"id": "c"}, {}]]
    details = {"dice": torch.tensor([[0.9], [0.8], [0.7], [math.nan]]), "hd95": torch.tensor([[1.0, 3.0], [2.0, 2.0], [4.0, 4.0], [5.0, 5.0]])}
    engine = Engine(lambda e, batch: batch)

    @engine.on(Events.EPOCH_COMPLETED)
    def metric_handlers(e):  # what MONAI's metric handlers with save_details=True leave (attached before the writer)
        e.state.metric_details = dict(details)

    EvaluationReportWriter(tmp_path, "gt_box", extra={"model": "lite_medsam"}).attach(engine)
    engine.run(batches, max_epochs=1)
    with (tmp_path / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["a", "b", "c", "case_3"]
    assert [float(r["hd95"]) for r in rows] == [2.0, 2.0, 4.0, 5.0] and rows[3]["dice"] == "nan"
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["n"] == 4 and summary["prompt"] == "gt_box" and summary["model"] == "lite_medsam"
    assert summary["dice_mean"] == pytest.approx(0.8) and summary["dice_median"] == pytest.approx(0.8) and summary["dice_failures"] == 1
    assert summary["hd95_mean"] == pytest.approx(13 / 4) and summary["hd95_failures"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "per_image.csv"]  # not MetricsSaver's own files


class _LastIou:
    """Stands in for SamInferer: its IoU estimate of the last batch's one mask."""

    def __init__(self, iou: float, searched: bool | None = None, boxed: bool = False) -> None:
        self.last_iou = torch.tensor([[iou]])
        self.last_searched = None if searched is None else torch.tensor([searched])
        self.last_boxes = torch.tensor([[10.0, 10.0, 200.0, 200.0]]) if boxed else None


def _bumpy_head() -> tuple[np.ndarray, np.ndarray]:
    """A head mask in MONAI's ``[1, W, H]`` layout with a bite and a bump, and its fitted ellipse's fill."""
    from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask, fit_ellipse_to_mask

    head = ellipse_to_mask(Ellipse(270.0, 400.0, 150.0, 110.0, 0.4), (800, 540)).astype(np.float32)
    head[390:400, 150:165] = 0.0
    head[380:392, 400:412] = 1.0
    return head[None], ellipse_to_mask(fit_ellipse_to_mask(head > 0), head.shape)[None]


def test_a_trusted_head_becomes_its_fitted_ellipse_with_the_type_and_meta_kept() -> None:
    from monai.data import MetaTensor

    from monai_fetal.engines.head_measure import HeadEllipsed

    head, ellipse = _bumpy_head()
    pred = MetaTensor(torch.from_numpy(head), meta={"filename_or_obj": "scan.png"})
    out = HeadEllipsed(keys="pred", inferer=_LastIou(0.99))({"pred": pred})["pred"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and out.shape == pred.shape
    assert out.meta["filename_or_obj"] == "scan.png"
    assert np.array_equal(out.numpy() > 0, ellipse > 0) and not np.array_equal(out.numpy(), head)


def test_a_flagged_head_is_written_as_its_ellipse_too_and_a_mask_with_no_head_stays() -> None:
    from monai_fetal.engines.head_measure import HeadEllipsed
    from monai_fetal.shape.measure import MIN_HEAD_PIXELS

    head, ellipse = _bumpy_head()
    low_iou = HeadEllipsed(keys="pred", inferer=_LastIou(0.5))({"pred": torch.from_numpy(head)})["pred"]
    assert np.array_equal(low_iou.numpy() > 0, ellipse > 0)
    empty = HeadEllipsed(keys="pred")({"pred": torch.zeros(1, 80, 60)})["pred"]
    assert not empty.any()
    speck = torch.zeros(1, 80, 60)
    speck[0, 10:15, 10:15] = 1.0  # 25 pixels: no head
    assert 25 < MIN_HEAD_PIXELS and torch.equal(HeadEllipsed(keys="pred")({"pred": speck.clone()})["pred"], speck)


def test_the_measured_quality_is_the_networks_mask_not_its_ellipse() -> None:
    from monai.data import MetaTensor

    from monai_fetal.engines.head_measure import HeadEllipsed, MeasureHeadd
    from monai_fetal.shape.measure import measure_head

    head, _ = _bumpy_head()
    item = {"pred": torch.from_numpy(head), "image": MetaTensor(torch.zeros(1, 800, 540), meta={"filename_or_obj": "scan.png"}), "spacing": math.nan}
    iou = _LastIou(0.99)
    ellipsed = HeadEllipsed(keys="pred", inferer=iou)(item)
    out = MeasureHeadd(keys="pred", inferer=iou)({**ellipsed, "pred": ellipsed["pred"][0]})  # as SqueezeDimd leaves it
    network = measure_head(head[0].T > 0, None, float(iou.last_iou[0, 0]))
    assert out["measurement"].quality == network.quality and out["measurement"].quality.ellipse_dice < 1.0
    assert out["result"]["quality"] == pytest.approx(network.quality.score, abs=1e-4) and not out["measurement"].flagged


def test_flag_below_sets_which_heads_are_flagged_and_a_bad_value_is_refused() -> None:
    from monai.data import MetaTensor

    from monai_fetal.engines.head_measure import HeadEllipsed, MeasureHeadd
    from monai_fetal.errors import ConfigError

    head, ellipse = _bumpy_head()
    item = {"pred": torch.from_numpy(head), "image": MetaTensor(torch.zeros(1, 800, 540), meta={"filename_or_obj": "scan.png"}), "spacing": math.nan}
    iou = _LastIou(0.99)
    ellipsed = HeadEllipsed(keys="pred", inferer=iou)(item)
    assert np.array_equal(ellipsed["pred"].numpy(), ellipse)
    for flag_below, flagged in ((0.5, False), (0.999, True)):  # the head's quality is between the two
        out = MeasureHeadd(keys="pred", inferer=iou, flag_below=flag_below)({**ellipsed, "pred": ellipsed["pred"][0]})
        assert out["measurement"].flagged is flagged and out["result"]["flag_below"] == flag_below
    for bad in (1.5, "high", math.nan):
        with pytest.raises(ConfigError, match="flag_below"):
            MeasureHeadd(keys="pred", flag_below=bad)


def test_heads_are_written_and_measured_as_the_ellipse_snapped_to_the_skull_edge() -> None:
    """The network's mask 4 % small inside a drawn skull: a trusted head and a flagged one are both written and
    measured as the ellipse on the skull's outer edge (snapped once); without the ellipse, the measure is snapped."""
    from monai.data import MetaTensor

    from monai_fetal.engines.head_measure import HeadEllipsed, MeasureHeadd
    from monai_fetal.errors import ConfigError
    from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask, fit_ellipse_to_mask
    from monai_fetal.shape.measure import measure_head

    skull = Ellipse(cx=150.0, cy=110.0, a=90.0, b=70.0, theta=-0.4)
    brain = Ellipse(skull.cx, skull.cy, skull.a - 7, skull.b - 7, skull.theta)
    outer, inner = ellipse_to_mask(skull, (220, 300)), ellipse_to_mask(brain, (220, 300))
    image = torch.from_numpy(30.0 + 170.0 * (outer - inner) + 20.0 * inner).float()[None]
    small = ellipse_to_mask(Ellipse(skull.cx, skull.cy, 0.96 * skull.a, 0.96 * skull.b, skull.theta), (220, 300))
    item = {
        "pred": torch.from_numpy(small).float()[None],
        "image_as_read": image,
        "image": MetaTensor(torch.zeros(1, 256, 256), meta={"filename_or_obj": "scan.png"}),
        "spacing": math.nan,
    }

    def on_skull(circumference: float) -> bool:
        return abs(circumference - skull.circumference()) < 0.01 * skull.circumference()

    assert not on_skull(fit_ellipse_to_mask(small).circumference())
    for iou, flagged in ((0.99, False), (0.5, True)):
        ellipsed = HeadEllipsed(keys="pred", inferer=_LastIou(iou), edge_image_key="image_as_read")(item)
        written = ellipsed["pred"][0].numpy()
        measured = MeasureHeadd(keys="pred", inferer=_LastIou(iou), edge_image_key="image_as_read")({**ellipsed, "pred": ellipsed["pred"][0]})
        head = measured["measurement"]
        assert head.flagged is flagged and on_skull(head.biometry.hc), (iou, head.biometry.hc)
        assert on_skull(fit_ellipse_to_mask(written).circumference())  # the written ellipse is what is measured,
        assert head.biometry.hc == measure_head(written.T > 0).biometry.hc  # not snapped a second time
    network = MeasureHeadd(keys="pred", inferer=_LastIou(0.5), edge_image_key="image_as_read")({**item, "pred": item["pred"][0]})
    assert np.array_equal(network["pred"].numpy(), small) and on_skull(network["measurement"].biometry.hc)
    unsnapped = HeadEllipsed(keys="pred", inferer=_LastIou(0.99), edge_image_key="image_as_read", edge_search_px=0)(item)["pred"]
    assert np.array_equal(unsnapped[0].numpy(), ellipse_to_mask(fit_ellipse_to_mask(small), small.shape))
    snap = HeadEllipsed(keys="pred", inferer=_LastIou(0.99), edge_image_key="image_as_read")
    with pytest.raises(ValueError, match="image_as_read"):
        snap({"pred": item["pred"]})
    with pytest.raises(ValueError, match="before framing"):
        snap({**item, "image_as_read": torch.zeros(1, 256, 256)})
    for transform, bad in itertools.product((HeadEllipsed, MeasureHeadd), (-1.0, "far", math.inf)):
        with pytest.raises(ConfigError, match="edge_search_px"):
            transform(keys="pred", edge_search_px=bad)


def test_a_searched_head_is_flagged_below_the_higher_threshold() -> None:
    from monai.data import MetaTensor

    from monai_fetal.engines.head_measure import PREDICTION_QUALITY_KEY, HeadEllipsed, MeasureHeadd

    head, ellipse = _bumpy_head()
    item = {"pred": torch.from_numpy(head), "image": MetaTensor(torch.zeros(1, 800, 540), meta={"filename_or_obj": "scan.png"}), "spacing": math.nan}
    score = HeadEllipsed(keys="pred", inferer=_LastIou(0.99))(item)[PREDICTION_QUALITY_KEY].score
    for searched, flag_searched_below, flagged in ((False, 0.999, False), (True, 0.999, True), (True, 0.5, False)):
        inferer = _LastIou(0.99, searched=searched)
        ellipsed = HeadEllipsed(keys="pred", inferer=inferer)(item)
        assert np.array_equal(ellipsed["pred"].numpy(), ellipse)
        measure = MeasureHeadd(keys="pred", inferer=inferer, flag_below=0.5, flag_searched_below=flag_searched_below)
        out = measure({**ellipsed, "pred": ellipsed["pred"][0]})
        assert out["measurement"].quality.score == pytest.approx(score) and 0.5 < score < 0.999
        assert out["measurement"].flagged is flagged and out["result"]["flagged"] is flagged
        assert out["result"]["searched"] is searched and out["result"]["flag_searched_below"] == flag_searched_below
    with pytest.raises(ConfigError, match="flag_searched_below"):
        MeasureHeadd(keys="pred", flag_searched_below=1.5)


def test_a_head_from_a_given_box_is_flagged_below_the_boxed_threshold_only() -> None:
    from monai.data import MetaTensor

    from monai_fetal.engines.head_measure import HeadEllipsed, MeasureHeadd

    head, _ = _bumpy_head()
    item = {"pred": torch.from_numpy(head), "image": MetaTensor(torch.zeros(1, 800, 540), meta={"filename_or_obj": "scan.png"}), "spacing": math.nan}
    for boxed, flagged in ((False, True), (True, False)):
        inferer = _LastIou(0.99, boxed=boxed)
        ellipsed = HeadEllipsed(keys="pred", inferer=inferer)(item)
        out = MeasureHeadd(keys="pred", inferer=inferer, flag_below=0.999, flag_boxed_below=0.5)({**ellipsed, "pred": ellipsed["pred"][0]})
        assert 0.5 < out["measurement"].quality.score < 0.999
        assert out["measurement"].flagged is flagged and out["result"]["flagged"] is flagged
        assert out["result"]["boxed"] is boxed and (out["result"]["flag_below"], out["result"]["flag_boxed_below"]) == (0.999, 0.5)
    plain = MeasureHeadd(keys="pred", inferer=_LastIou(0.99, boxed=True), flag_below=0.5, flag_boxed_below=0.999)
    assert plain({**item, "pred": item["pred"][0]})["measurement"].flagged
    with pytest.raises(ConfigError, match="flag_boxed_below"):
        MeasureHeadd(keys="pred", flag_boxed_below=-0.1)
