"""Toy separation of image mixtures (the seed's MNIST / CIFAR-10 experiment): mixture = mean of two test images.

Pair i is (test image 2i, test image 2i + 1). The score is the PSNR (peak 1) of each pair, the mean over its two
images, taking the better of the two source orders (BASIS does not know which prior is which when both are the same
model); the baseline returns the mixture for both sources.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np

from core.config import Config
from separation.basis import best_permutation_psnr
from datasets.data_loader import Scaling
from separation.separate import SeparationResult, model_scaling, tensorboard_images

#: mixtures separated by default (the seed's table: 1 000 pairs)
DEFAULT_PAIRS = 1000
#: the per-pair scores in the output folder
PSNR_NAME = "psnr.csv"


@dataclasses.dataclass
class ImageTask:
    """Pairs of test images and their mean.

    Attributes:
        references: (2, N, h, w, c) float32 in [0, 1].
        mixture: (N, h, w, c) float32 in model units.
    """

    dataset: str
    config: Config
    model: str
    references: np.ndarray
    mixture: np.ndarray

    kind = "images"
    default_mixing = "mean"
    names = ["image1", "image2"]

    @property
    def n_mixtures(self) -> int:
        return self.mixture.shape[0]

    @property
    def scaling(self) -> Scaling:
        return model_scaling(self.config, self.model)

    @property
    def description(self) -> str:
        h, w, c = self.mixture.shape[1:]
        return f"{self.dataset}: {self.n_mixtures} mixtures of two {h}x{w}x{c} test images (their mean)"

    def to_data(self, values: np.ndarray) -> np.ndarray:
        return self.scaling.from_model(values)

    def scores(self, estimates_unit: np.ndarray):
        """(psnr (2, N), swapped (N,), baseline (2, N)) of estimates (2, N, h, w, c) in [0, 1]."""
        values, swapped = best_permutation_psnr(estimates_unit, self.references)
        mixture = self.scaling.from_model(self.mixture)
        baseline, _ = best_permutation_psnr(np.stack([mixture, mixture]), self.references)
        return values, swapped, baseline

    def save(self, output: Path, result: SeparationResult, logger: logging.Logger) -> dict:
        """results.npz (x1, x2, gt1, gt2, mixed, psnr), results_convergence.npz, psnr.csv, separation.png,
        TensorBoard images; prints the mean PSNR next to the mixture baseline."""
        from separation.figures import plot_image_separation
        from separation.results import save_convergence, save_results

        estimates = self.to_data(result.estimates)
        values, swapped, baseline = self.scores(estimates)
        ordered = np.where(swapped[None, :, None, None, None], estimates[::-1], estimates)
        mixture = self.scaling.from_model(self.mixture)
        save_results(output, list(ordered), mixture, list(self.references), psnr=values.mean(axis=0))
        history = self.to_data(result.history)
        save_convergence(output, result.sigmas, [history[:, 0], history[:, 1]])
        with open(output / PSNR_NAME, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["pair", "psnr_image1", "psnr_image2", "psnr", "swapped", "baseline_psnr"])
            for i in range(self.n_mixtures):
                writer.writerow([i, f"{values[0, i]:.4f}", f"{values[1, i]:.4f}", f"{values[:, i].mean():.4f}",
                                 int(swapped[i]), f"{baseline[:, i].mean():.4f}"])
        plot_image_separation(mixture, ordered, self.references, output / "separation.png",
                              title=f"BASIS on {self.dataset}: mean PSNR {values.mean():.2f} dB")
        shown = slice(0, min(8, self.n_mixtures))
        tensorboard_images(output, {"mixture": mixture[shown], "estimate/image1": ordered[0, shown],
                                     "estimate/image2": ordered[1, shown], "ground_truth/image1":
                                     self.references[0, shown], "ground_truth/image2": self.references[1, shown]},
                            flip=False)
        message = (f"PSNR over {self.n_mixtures} mixtures (best source order): BASIS {values.mean():.2f} dB "
                   f"(median {np.median(values.mean(axis=0)):.2f}), mixture baseline {baseline.mean():.2f} dB")
        logger.info("separated in %.1f s; %s", result.seconds, message)
        print(message, flush=True)
        return {"psnr": values, "baseline": baseline}


def image_task(dataset: str, config: Config, n_pairs: int, model: str) -> ImageTask:
    """The first ``2 n_pairs`` test images of ``dataset`` as ``n_pairs`` mixtures; the config's height and width are
    set to the images'.

    Raises:
        UserError: the data cannot be loaded or there are too few test images.
    """
    from datasets.data_loader import image_shape, load_test_images

    height, width, _ = image_shape(dataset)
    config = dataclasses.replace(config, height=height, width=width)
    images = load_test_images(dataset, 2 * n_pairs)
    references = np.stack([images[0::2], images[1::2]])
    return ImageTask(dataset, config, model, references, model_scaling(config, model).to_model(references.mean(axis=0)))
