"""Self-training of the head locator on unlabelled images: what 5 labelled images cannot teach is where the head is.

The fine-tuned model segments the unlabelled images with no box (:class:`AutoBoxPrompt`); masks whose
quality reaches ``min_quality`` become pseudo-labels, and the locator is trained again on the labelled
masks plus these (embeddings are computed once; the encoder stays frozen). Each round pseudo-labels
again with the retrained locator. On the 213 protocol test images (5-shot model, seed 0, Dice in the
SAM frame) two rounds on the 219-image unlabelled pool raised no-box Dice from 0.907 to 0.937 and cut
the share of images under 0.90 from 19 % to 11 %.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.utils import CommonKeys
from torch import nn

from monai_fetal.atomic import atomic_path, write_json_atomic
from monai_fetal.engines.auto_prompt import AutoBoxPrompt

__all__ = ["LocatorSelfTraining", "SELF_TRAINING_NAME"]

SELF_TRAINING_NAME = "self_training.json"
"""Per-round statistics written beside the model."""

_LOG = logging.getLogger(__name__)


class _Locator(nn.Module):
    """The network's head locator as a module from embeddings to frame-size logits (what the trainer trains)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.network.locate(embeddings.float())  # embeddings are kept in float16


class LocatorSelfTraining:
    """Pseudo-label unlabelled images with the no-box path and retrain the head locator on them, ``rounds`` times.

    Args:
        network: the fine-tuned :class:`~monai_fetal.networks.SamRuntime` or
            :class:`~monai_fetal.networks.PromptedSam` (its weights are loaded from ``model_path`` first: the
            best model of the supervised run).
        model_path: the supervised run's ``model.pt``; rewritten (atomically) with the retrained locator.
        labelled: transform of a labelled item to ``{"image": [3, S, S] frame, "label": [1, S, S]}``.
        unlabelled: transform of an unlabelled item to ``{"image": [3, S, S] frame}`` (the inference framing).
        labelled_items: the real training items (their masks are never replaced).
        unlabelled_items: ``[{"image": path, ...}]`` images without masks.
        auto_prompt: the no-box prompt that makes pseudo-labels (its quality decides which are kept).
        rounds: pseudo-label and retrain rounds.
        steps: locator training steps per round.
        batch_size: embeddings per step.
        learning_rate: the locator's learning rate.
        min_quality: pseudo-labels of lower quality are left out (the flag threshold of ``segment``).
        labelled_repeats: each labelled item counts this many times (a few real among many pseudo-labels).
        device: where training runs.
    """

    def __init__(
        self,
        network: nn.Module,
        model_path: str | Path,
        labelled: Callable[[dict], dict],
        unlabelled: Callable[[dict], dict],
        labelled_items: Sequence[dict],
        unlabelled_items: Sequence[dict],
        auto_prompt: AutoBoxPrompt | None = None,
        rounds: int = 2,
        steps: int = 300,
        batch_size: int = 16,
        learning_rate: float = 3e-3,
        min_quality: float = 0.92,
        labelled_repeats: int = 4,
        device: str | torch.device = "cpu",
    ) -> None:
        if rounds < 1 or steps < 1:
            raise ValueError(f"rounds and steps must be >= 1, got {rounds} and {steps}")
        self.network = network
        self.model_path = Path(model_path)
        self.labelled, self.unlabelled = labelled, unlabelled
        self.labelled_items, self.unlabelled_items = list(labelled_items), list(unlabelled_items)
        self.auto_prompt = auto_prompt or AutoBoxPrompt()
        self.rounds, self.steps, self.batch_size = rounds, steps, batch_size
        self.learning_rate, self.min_quality, self.labelled_repeats = learning_rate, min_quality, labelled_repeats
        self.device = torch.device(device)

    @torch.no_grad()
    def _embed(self, frames: list[torch.Tensor]) -> list[torch.Tensor]:
        self.network.eval()
        return [self.network.encode(frame[None].to(self.device))[0].half().cpu() for frame in frames]

    @torch.no_grad()
    def _pseudo_labels(self, frames: list[torch.Tensor], embeddings: list[torch.Tensor]) -> tuple[list[torch.Tensor], np.ndarray]:
        """No-box masks ``[1, S, S]`` and their qualities for the unlabelled frames."""
        self.network.eval()
        masks, qualities = [], []
        for frame, embedding in zip(frames, embeddings):
            image, embedding = frame[None].to(self.device), embedding[None].to(self.device, torch.float32)
            auto = self.auto_prompt.segment(self.network, image, embedding)
            masks.append((auto.logits[0] > 0).float().cpu())
            qualities.append(float(auto.quality[0]))
        return masks, np.array(qualities)

    def _train_locator(self, items: list[dict]) -> float:
        """Train the locator for ``steps`` steps on ``items`` (``image``: embedding, ``label``: mask); the last loss."""
        locator = _Locator(self.network)
        self.network.requires_grad_(False)
        self.network.locator.requires_grad_(True)
        loader = DataLoader(items, batch_size=self.batch_size, shuffle=True, drop_last=len(items) > self.batch_size)
        trainer = SupervisedTrainer(  # one epoch of ``steps`` iterations: ignite restarts the loader as needed
            device=self.device,
            max_epochs=1,
            epoch_length=self.steps,
            train_data_loader=loader,
            network=locator,
            optimizer=torch.optim.AdamW(self.network.locator.parameters(), lr=self.learning_rate, weight_decay=0.01),
            loss_function=DiceCELoss(sigmoid=True, squared_pred=True),
            decollate=False,
        )
        self.network.locator.train()
        trainer.run()
        self.network.eval()
        return float(trainer.state.output[CommonKeys.LOSS])

    def run(self) -> dict:
        """Run the rounds, rewrite ``model_path`` with the retrained locator and write ``self_training.json``; its content.

        With no unlabelled item nothing is done (``{}``); a rerun after a complete self-training (its
        ``self_training.json`` no older than ``model_path``) returns the recorded statistics.
        """
        if not self.unlabelled_items:
            return {}
        record = self.model_path.parent / SELF_TRAINING_NAME
        if record.is_file() and record.stat().st_mtime >= self.model_path.stat().st_mtime:
            _LOG.info("self-training done before (%s): skipped", record)
            return json.loads(record.read_text())
        self.network.load_state_dict(torch.load(self.model_path, map_location=self.device, weights_only=True))
        self.network.to(self.device)
        real = [self.labelled(dict(item)) for item in self.labelled_items]
        real_embeddings = self._embed([r["image"].as_subclass(torch.Tensor) for r in real])
        real_items = [
            {"image": embedding, "label": (torch.as_tensor(r["label"]).as_subclass(torch.Tensor) > 0).float()}
            for r, embedding in zip(real, real_embeddings)
        ] * self.labelled_repeats
        frames = [self.unlabelled(dict(item))["image"].as_subclass(torch.Tensor) for item in self.unlabelled_items]
        embeddings = self._embed(frames)
        stats = {"labelled": len(real), "unlabelled": len(frames), "min_quality": self.min_quality, "rounds": []}
        for number in range(1, self.rounds + 1):
            masks, qualities = self._pseudo_labels(frames, embeddings)
            kept = [{"image": e, "label": m} for e, m, q in zip(embeddings, masks, qualities) if q >= self.min_quality]
            loss = self._train_locator(real_items + kept)
            stats["rounds"].append({"round": number, "pseudo_labels": len(kept), "mean_quality": float(qualities.mean()), "loss": loss})
            _LOG.info("self-training round %d: %d of %d pseudo-labels kept, locator loss %.4f", number, len(kept), len(frames), loss)
        with atomic_path(self.model_path) as tmp:
            torch.save(self.network.state_dict(), tmp)
        write_json_atomic(record, stats)
        return stats
