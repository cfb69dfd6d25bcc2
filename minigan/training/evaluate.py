"""What a run shows of itself: samples of G (the EMA's when --ema is on), sample grids, and the
final evaluation (toy mode statistics and EMD, FID/KID/precision/recall on the shipped digit
classifier, sliced Wasserstein distance). Every evaluation draws from its own generators (seeded
from the run's seed), so it leaves the training stream, and so exact resume, untouched.
"""
from __future__ import annotations

import json

import numpy as np

from .. import backend


class Evaluation:
    """The Trainer's sampling and evaluation (a mixin: it reads the Trainer's G, EMA, data
    description and run folder)."""

    def samples(self, z=None, labels=None):
        """G on the fixed noise (or given z), in eval mode (BatchNorm uses running stats)."""
        z = self.fixed_z if z is None else z
        labels = self.fixed_labels if labels is None and z is self.fixed_z else labels
        G = self.G if self.ema is None else self.ema.module  # the averaged G when --ema is on
        G.eval()
        try:
            z, labels = self.draws.to_device(z), self.draws.to_device(labels)
            out = G(z) if labels is None else G(z, labels)
        finally:
            if G is self.G:
                G.train()
        out = tuple(map(backend.to_numpy, out)) if isinstance(out, tuple) else backend.to_numpy(out)
        if isinstance(out, tuple):  # CoGAN: both domains side by side
            out = np.concatenate([o.reshape((len(o),) + tuple(self.image_shape)) for o in out], axis=-1)
        if not self.toy:
            out = out.reshape((len(out),) + tuple(self.image_shape if out.ndim == 2 else out.shape[1:]))
        return out

    def save_samples(self, name: str):
        from ..images import save_grid, save_points_png

        path = self.out / name
        if not self.is_root:  # rank 0 writes every file
            return path
        samples = self.samples()
        if self.toy:
            save_points_png(samples, path, real=self.reference_points(), title=f"step {self.step}")
        else:
            save_grid(samples, path, nrow=8)
        return path

    def reference_points(self, n=2000):
        from .. import data

        return data.load_dataset(self.config.data, n=n, rng=np.random.default_rng([self.config.seed, 3]))[0]

    def finish(self, interrupted: bool = False) -> dict:
        """Final samples, the loss curve, quality metrics and summary.json."""
        from ..plots import plot_losses

        if not self.is_root:
            return {"step": self.step, "interrupted": interrupted, "out": str(self.out)}
        self.save_samples("samples.png")
        plot_losses(self.out / "metrics.csv", self.out / "losses.png")
        summary = {"step": self.step, "interrupted": interrupted, "out": str(self.out)}
        if self.toy and self.modes is not None:
            summary.update(self.toy_quality(self.config.eval_samples))
        elif not self.toy and self.config.data in ("digits", "mnist5k") and self.config.model != "cogan":
            summary.update(self.image_quality())
        if not self.toy:  # any image data, a user's folder included
            summary.update(self.swd_quality())
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def image_quality(self) -> dict:
        """FID/KID/precision/recall on the shipped classifier's features, with the held-out real
        floor (minigan.image_metrics). Its own RNG streams leave self.rng (exact resume) untouched."""
        from ..data import DataError
        from ..image_metrics import held_out_size, image_quality

        c = self.config
        try:
            n = held_out_size(c.data)  # 450 digits / 1,250 mnist5k: floor and fakes at the same n
            z = np.random.default_rng([c.seed, 4]).standard_normal((n, self.latent_dim)).astype(np.float32)
            labels = np.arange(n) % c.num_classes if self.conditional else None
            return image_quality(self.samples(z, labels), c.data, rng=np.random.default_rng([c.seed, 5]))
        except (FileNotFoundError, DataError) as err:  # weights file or mnist5k data missing
            return {"image_metrics_error": str(err)}

    def swd_quality(self, real=None, n: int | None = None) -> dict:
        """Sliced Wasserstein distance on Laplacian-pyramid patches (minigan.swd) between n generated
        images and n real ones (the training data, or ``real``), with the real-vs-real floor (two
        disjoint halves of the real images); n = min(eval_samples or the n given, half the real
        images). Own RNG streams, as image_quality."""
        from ..swd import swd_with_floor

        c = self.config
        if real is None:  # the training data (an MLP's rows as images)
            real = backend.to_numpy(self.sampler.data).reshape((-1,) + tuple(self.image_shape))
        n = max(1, min(n or c.eval_samples, len(real) // 2))
        z = np.random.default_rng([c.seed, 6]).standard_normal((n, self.latent_dim)).astype(np.float32)
        labels = np.arange(n) % c.num_classes if self.conditional else None
        fake = np.concatenate([self.samples(z[i:i + 256], None if labels is None else labels[i:i + 256])
                               for i in range(0, n, 256)])  # G's activations for 256 images at a time
        fake = fake[..., :real.shape[-1]]  # CoGAN: the first domain (the data itself)
        try:
            return swd_with_floor(real, fake, seed=c.seed)
        except ValueError as err:  # fewer than 2 images, images of other shapes or below 7×7 px
            return {"swd_error": str(err)}

    def toy_quality(self, n: int = 2000) -> dict:
        from ..metrics import emd, mode_statistics

        samples = self.samples()[:n]
        centres, std = self.modes
        stats = mode_statistics(samples, centres, std)
        return {"modes_captured": int(stats["modes_captured"]), "n_modes": int(stats["n_modes"]),
                "high_quality_fraction": float(stats["high_quality_fraction"]),
                "jsd_modes": float(stats["jsd_modes"]),
                "emd": float(emd(samples, self.reference_points(n), rng=np.random.default_rng(0)))}
