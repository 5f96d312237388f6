"""The model / runtime split: PromptedSam is the model only; SamRuntime runs it (precision, OpenVINO, cache) with the model's state dict."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

import monai_fetal.networks.prompted_sam as prompted_sam_module
from monai_fetal.bundles import EVALUATE_CONFIGS, read_bundle_config
from monai_fetal.engines import SamInferer
from monai_fetal.networks import PromptedSam, SamRuntime, build_prompted_sam, default_precision

BOXES = torch.tensor([[30.0, 40.0, 200.0, 180.0], [10.0, 20.0, 120.0, 100.0]])


@pytest.fixture(scope="module")
def model() -> PromptedSam:
    return build_prompted_sam("lite_medsam", trainable="none")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))


def test_the_model_holds_no_precision_openvino_or_cache_state(model):
    for name in ("precision", "set_precision", "use_embedding_cache", "embedding_cache", "_cache", "_openvino"):
        assert not hasattr(model, name), name
    runtime_names = {"OpenVinoModel", "EmbeddingCache", "openvino_available", "export_friendly", "default_precision", "PRECISIONS"}
    assert not runtime_names & set(vars(prompted_sam_module))
    assert [name for name, _ in SamRuntime(model).named_children()] == ["model"]


def test_the_runtime_at_fp32_gives_the_models_masks(model, images):
    runtime = SamRuntime(model, "fp32")
    with torch.no_grad():
        for boxes in (BOXES, None):
            assert torch.equal(runtime(images, boxes, with_locator=True), model(images, boxes, with_locator=True))
        embeddings = runtime.encode(images)
        assert torch.equal(embeddings, model.encode(images))
        for multimask in (False, True):
            ours, our_iou = runtime.decode(embeddings, BOXES, multimask=multimask, return_iou=True)
            theirs, their_iou = model.decode(embeddings, BOXES, multimask=multimask, return_iou=True)
            assert torch.equal(ours, theirs) and torch.equal(our_iou, their_iou)
        automatic = SamInferer("auto")
        assert torch.equal(automatic(images[:1], runtime), automatic(images[:1], model))
    assert runtime.frame_size == model.frame_size and runtime.locator is model.locator


def test_a_model_pt_of_the_bare_model_loads_into_the_runtime_and_is_written_back_key_for_key(tmp_path, images):
    old = build_prompted_sam("lite_medsam", trainable="decoder")
    with torch.no_grad():
        old.locator.layers[0].bias.add_(1.0)  # a weight that differs from a fresh build
        old.locator.trained.fill_(True)
    torch.save(old.state_dict(), tmp_path / "model.pt")  # what CheckpointSaver wrote before the split
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    runtime = SamRuntime(build_prompted_sam("lite_medsam", trainable="none"), "fp32")
    incompatible = runtime.load_state_dict(state, strict=False)
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    written = runtime.state_dict()
    assert list(written) == list(state) and all(torch.equal(written[key], state[key]) for key in state)
    with torch.no_grad():
        assert torch.equal(runtime(images, BOXES, with_locator=True), old.eval()(images, BOXES, with_locator=True))
    wrapped = torch.nn.ModuleDict({"module": runtime})  # as DistributedDataParallel holds it
    assert set(wrapped.state_dict()) == {f"module.{key}" for key in state}
    wrapped.load_state_dict(wrapped.state_dict())
    with pytest.raises(RuntimeError, match="Unexpected key"):
        runtime.load_state_dict({**state, "extra.weight": torch.zeros(1)})


def test_loading_weights_refingerprints_the_embedding_cache(tmp_path):
    runtime = SamRuntime(build_prompted_sam("lite_medsam", trainable="none"), "fp32", tmp_path)
    first = runtime.embedding_cache.fingerprint
    state = {key: value + 0.1 if key.endswith("neck.3.bias") else value for key, value in runtime.state_dict().items()}
    runtime.load_state_dict(state)
    assert runtime.embedding_cache.fingerprint != first


def _parsed(config: str | tuple[str, ...], **overrides) -> ConfigParser:
    return read_bundle_config("fetal_head_sam", config, {"device": "$torch.device('cpu')", **overrides})


@pytest.mark.parametrize("config", ["inference.json", EVALUATE_CONFIGS, "train.json"])
def test_network_def_builds_the_runtime_on_the_default_precision(config, tmp_path):
    """MONAI Label and ``monai.bundle`` tools instantiate ``network_def`` alone: it is the fast path."""
    network = _parsed(config, output_dir=str(tmp_path)).get_parsed_content("network_def")
    assert isinstance(network, SamRuntime) and network.precision == default_precision("cpu")
    assert isinstance(network.model, PromptedSam)
    assert (network.embedding_cache_dir is not None) == (config == "train.json")


def test_train_optimizer_gives_the_locator_its_own_learning_rate(tmp_path):
    parser = _parsed("train.json", output_dir=str(tmp_path), precision="fp32")
    network, optimizer = parser.get_parsed_content("network"), parser.get_parsed_content("optimizer")
    decoder, locator = ({id(p) for p in group["params"]} for group in optimizer.param_groups)
    assert locator == {id(p) for p in network.locator.parameters()}
    assert decoder == {id(p) for p in network.model.mask_decoder.parameters()}
    assert optimizer.param_groups[1]["lr"] == parser.get_parsed_content("locator_learning_rate")
