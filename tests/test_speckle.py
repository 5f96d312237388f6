"""Speckle texture of a latent generator: fitted on real images, added per pair seed, shipped with the prior and checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from monai_fetal.bundles import bundle_dir
from monai_fetal.data.io import read_image
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.networks.latent import load_latent_generator
from monai_fetal.networks.latent_release import OPTIONAL_RELEASE_FILES, SPECKLE_SCALE, checked_prior, verified_release
from monai_fetal.networks.speckle import SPECKLE_NAME, SpeckleTexture, copy_speckle, fit_speckle, reconstruct, speckle_of

BUNDLE = "fetal_us_diffusion"
PRIOR = bundle_dir(BUNDLE) / "models" / "prior"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texture(scale: float = 1.0) -> SpeckleTexture:
    kernel = np.zeros((5, 5), dtype=np.float32)
    kernel[2, 1:4] = 1.0 / np.sqrt(3.0)  # lateral speckle: correlated along the rows
    return SpeckleTexture(kernel, tuple(np.linspace(0.0, 0.15, 16)), scale)


def _finest_band_energy(image: np.ndarray) -> float:
    return float(np.mean((image[1:-1, 1:-1] - (image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:]) / 4.0) ** 2))


def test_texture_follows_its_levels_spectrum_and_seed():
    texture = _texture()
    flat = np.full((120, 160), 0.5, dtype=np.float32)
    added = texture.add_to(flat, seed=7) - flat
    assert added.std() == pytest.approx(np.interp(0.5, (np.arange(16) + 0.5) / 16, texture.levels), rel=0.05)
    lateral = np.corrcoef(added[:, :-1].ravel(), added[:, 1:].ravel())[0, 1]
    axial = np.corrcoef(added[:-1].ravel(), added[1:].ravel())[0, 1]
    assert lateral > 0.5 and abs(axial) < 0.1
    assert np.array_equal(texture.add_to(flat, 7), texture.add_to(flat, 7))
    assert not np.allclose(texture.add_to(flat, 7), texture.add_to(flat, 8))
    dark = np.zeros((40, 40), dtype=np.float32)
    assert 0.0 <= texture.add_to(dark, 1).min() and texture.add_to(np.ones((40, 40), np.float32), 1).max() <= 1.0
    assert np.array_equal(_texture(0.0).add_to(flat, 7), flat)


def test_texture_refuses_bad_values_and_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="scale"):
        _texture(3.0)
    with pytest.raises(ConfigError, match="kernel"):
        SpeckleTexture(np.ones((4, 4)), tuple([0.1] * 16), 1.0)
    with pytest.raises(ConfigError, match="levels"):
        SpeckleTexture(np.ones((3, 3)), (0.1, 0.2), 1.0)
    path = _texture(0.5).save(tmp_path / SPECKLE_NAME)
    loaded = SpeckleTexture.load(path)
    assert loaded.digest() == _texture(0.5).digest() != _texture(0.6).digest()
    path.write_text('{"format": "monai_fetal.SpeckleTexture", "kernel": [[1.0]]}')
    with pytest.raises(InputDataError, match="speckle.json") as caught:
        SpeckleTexture.load(path)
    assert "delete it" in str(caught.value)
    with pytest.raises(ConfigError, match="texture"):
        speckle_of(tmp_path, "yes")
    assert speckle_of(tmp_path / "none") is None and copy_speckle(tmp_path / "none", tmp_path / "other") is None
    assert copy_speckle(tmp_path / "none", tmp_path) is None and not path.exists()  # a stale texture goes with its prior


def test_shipped_prior_has_a_texture_fitted_as_documented():
    assert (PRIOR / SPECKLE_NAME).is_file() and SPECKLE_NAME in OPTIONAL_RELEASE_FILES
    verified_release(bundle_dir(BUNDLE), PRIOR)
    texture = speckle_of(PRIOR)
    assert texture.scale == SPECKLE_SCALE
    assert 0.02 < max(texture.levels) < 0.1  # about 5-25 grey levels: what the autoencoder loses
    assert speckle_of(PRIOR, enabled=False) is None


def test_fitted_texture_restores_the_fine_detail_the_autoencoder_loses(hc18_subset: Path):
    """On real HC18 images: the reconstruction lacks fine detail; with the texture fitted on other images it has it again."""
    generator = load_latent_generator(checked_prior(bundle_dir(BUNDLE), PRIOR))
    size = generator.settings["image_size"]
    images = [np.asarray(read_image(path), dtype=np.float32) / 255.0 for path in sorted((hc18_subset / "images").glob("*_HC.png"))[:6]]
    texture = fit_speckle(generator.autoencoder, size, images[:4], 1.0)
    for seed, image in enumerate(images[4:]):
        reconstruction = reconstruct(generator.autoencoder, image, size)
        real, blurred, textured = (_finest_band_energy(x) for x in (image, reconstruction, texture.add_to(reconstruction, seed)))
        assert blurred < 0.5 * real
        assert 0.6 * real < textured < 1.6 * real


def test_tampered_or_unlisted_texture_is_refused(tmp_path: Path):
    root = tmp_path / "bundle"
    shutil.copytree(bundle_dir(BUNDLE) / "models", root / "models")
    shutil.copy(bundle_dir(BUNDLE) / "large_files.yml", root / "large_files.yml")
    speckle = root / "models" / "prior" / SPECKLE_NAME
    speckle.write_text(speckle.read_text().replace('"scale": 0.4', '"scale": 0.9'))
    with pytest.raises(InputDataError, match="sha256") as caught:
        checked_prior(root, root / "models" / "prior")
    assert SPECKLE_NAME in str(caught.value)
    listing = root / "large_files.yml"
    listing.write_text("large_files:\n" + "".join(f"- {block}" for block in listing.read_text().split("- ")[1:] if SPECKLE_NAME not in block))
    with pytest.raises(InputDataError, match="not listed"):
        verified_release(root, root / "models" / "prior")
    speckle.unlink()
    verified_release(root, root / "models" / "prior")  # a release without texture is still a release
