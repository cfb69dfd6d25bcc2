"""DiffAugment (Zhao et al. 2020): differentiable augmentations in front of the critic.

    aug = Augment("color,translation,cutout", rng=np.random.default_rng(0))
    critic_in = nn.Sequential(aug, critic)     # real and fake pass through the same pipeline

Every op maps x (N, C, H, W) given random draws ξ (one set per sample, drawn from a numpy
Generator in ``forward`` and kept for ``backward``) and is affine in x given ξ,
T(x; ξ) = L_ξ x + b_ξ, so (docs/derivations.md, section 4.3)

    backward       dx = L_ξᵀ g
    second order   J·c = L_ξ c,  s = 0  (nothing depends on x),  no parameters.

Ops (the official DiffAugment_pytorch.py's ranges), per sample:
    brightness   x + b,                       b ~ U(−0.5, 0.5)
    saturation   a(x − mean_C x) + mean_C x,  a ~ U(0, 2)      (mean over channels, per pixel)
    contrast     a(x − mean_CHW x) + mean_CHW x, a ~ U(0.5, 1.5)  (mean over the sample)
    translation  y[i, j] = x[i + t_h, j + t_w] (0 outside), t ∈ {−s..s}, s = int(H/8 + 0.5)
    cutout       x·m, m = 0 on a k×k square (k = int(H/2 + 0.5)) centred at a random place
                 (clipped at the border), 1 elsewhere
Policies name groups of :data:`AUGMENTATIONS` ("color" = brightness, saturation, contrast)
or single ops of :data:`OPS`; adding an op is one class and one registry entry.
"""
from __future__ import annotations

import numpy as np

from .backend import array_module
from .nn.init import make_rng
from .nn.module import Module


class AugmentOp:
    """One augmentation: ``draw`` its per-sample randomness, then an affine map of x given it.
    (docs/derivations.md, eq. AUG1)"""

    name = ""

    def draw(self, rng, shape):
        """The draws for a batch of ``shape`` (N, C, H, W): a dict of NumPy arrays."""
        raise NotImplementedError

    def apply(self, x, d):
        """T(x; ξ) = L_ξ x + b_ξ."""
        return self.linear(x, d)

    def linear(self, x, d):
        """L_ξ x (the map without its constant)."""
        raise NotImplementedError

    def adjoint(self, g, d):
        """L_ξᵀ g."""
        raise NotImplementedError


def _per_sample(xp, values, dtype):
    return xp.asarray(values, dtype=dtype).reshape(-1, 1, 1, 1)


class Brightness(AugmentOp):
    """Brightness (docs/derivations.md, eq. AUG2)."""
    name = "brightness"

    def draw(self, rng, shape):
        return {"b": rng.uniform(size=shape[0]) - 0.5}

    def apply(self, x, d):
        return x + _per_sample(array_module(x), d["b"], x.dtype)

    def linear(self, x, d):
        return x

    adjoint = linear


class _MeanBlend(AugmentOp):
    """a(x − Mx) + Mx = a x + (1 − a) Mx, M an averaging projection (symmetric): its own adjoint."""

    axes: tuple = ()

    def linear(self, x, d):
        """Saturation; Contrast (docs/derivations.md, eqs. AUG3, AUG4)."""
        a = _per_sample(array_module(x), d["a"], x.dtype)
        mean = x.mean(axis=self.axes, keepdims=True)
        return (x - mean) * a + mean

    adjoint = linear


class Saturation(_MeanBlend):
    """Saturation (docs/derivations.md, eq. AUG3)."""
    name, axes = "saturation", (1,)

    def draw(self, rng, shape):
        return {"a": rng.uniform(size=shape[0]) * 2}


class Contrast(_MeanBlend):
    """Contrast (docs/derivations.md, eq. AUG4)."""
    name, axes = "contrast", (1, 2, 3)

    def draw(self, rng, shape):
        return {"a": rng.uniform(size=shape[0]) + 0.5}


def _shift(x, th, tw):
    """y[n, :, i, j] = x[n, :, i + th_n, j + tw_n], 0 where that lies outside."""
    xp = array_module(x)
    n, c, h, w = x.shape
    ph, pw = int(np.abs(th).max(initial=0)), int(np.abs(tw).max(initial=0))
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    rows = xp.asarray(np.arange(h)[None, :] + th[:, None] + ph)  # (N, H)
    cols = xp.asarray(np.arange(w)[None, :] + tw[:, None] + pw)  # (N, W)
    return xpad[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                rows[:, None, :, None], cols[:, None, None, :]]


class Translation(AugmentOp):
    """Translation (docs/derivations.md, eq. AUG5)."""
    name = "translation"

    def __init__(self, ratio: float = 0.125):
        self.ratio = ratio

    def draw(self, rng, shape):
        n, _, h, w = shape
        sh, sw = int(h * self.ratio + 0.5), int(w * self.ratio + 0.5)
        return {"th": rng.integers(-sh, sh + 1, size=n), "tw": rng.integers(-sw, sw + 1, size=n)}

    def linear(self, x, d):
        return _shift(x, d["th"], d["tw"])

    def adjoint(self, g, d):
        """The translation's adjoint (docs/derivations.md, eq. AUG7)."""
        return _shift(g, -d["th"], -d["tw"])  # the opposite shift, zero-filled


class Cutout(AugmentOp):
    """Cutout (docs/derivations.md, eq. AUG6)."""
    name = "cutout"

    def __init__(self, ratio: float = 0.5):
        self.ratio = ratio

    def draw(self, rng, shape):
        n, _, h, w = shape
        kh, kw = int(h * self.ratio + 0.5), int(w * self.ratio + 0.5)
        oh = rng.integers(0, h + (1 - kh % 2), size=n)
        ow = rng.integers(0, w + (1 - kw % 2), size=n)
        return {"top": oh - kh // 2, "left": ow - kw // 2, "kh": kh, "kw": kw}

    def mask(self, shape, d, xp, dtype):
        """1 outside the square rows top..top+kh−1 × columns left..left+kw−1 (clipped), 0 inside."""
        _, _, h, w = shape
        r, c = np.arange(h)[None, :], np.arange(w)[None, :]
        top, left = d["top"][:, None], d["left"][:, None]
        in_r = (r >= top) & (r < top + d["kh"])  # (N, H)
        in_c = (c >= left) & (c < left + d["kw"])  # (N, W)
        return xp.asarray(~(in_r[:, None, :, None] & in_c[:, None, None, :]), dtype=dtype)

    def linear(self, x, d):
        return x * self.mask(x.shape, d, array_module(x), x.dtype)

    adjoint = linear


OPS = {"brightness": Brightness, "saturation": Saturation, "contrast": Contrast,
       "translation": Translation, "cutout": Cutout}
AUGMENTATIONS = {"color": ("brightness", "saturation", "contrast"), "translation": ("translation",),
                 "cutout": ("cutout",)}


def parse_policy(policy: str) -> list:
    """"color,translation" -> the op names, in order; groups of AUGMENTATIONS or single OPS."""
    names = []
    for part in (p.strip() for p in policy.split(",") if p.strip()):
        if part in AUGMENTATIONS:
            names += AUGMENTATIONS[part]
        elif part in OPS:
            names.append(part)
        else:
            raise ValueError(f"Augment: unknown augmentation {part!r}; valid: "
                             f"{', '.join(list(AUGMENTATIONS) + [o for o in OPS if o not in AUGMENTATIONS])}")
    return names


class Augment(Module):
    """A DiffAugment pipeline as a layer: fresh draws every forward, exact backward and
    second-order pass (so ``Sequential(augment, critic)`` can carry the gradient penalty).

    ``rng`` (a numpy Generator) is the pipeline's stream of draws; ``forward(x, rng=...)``
    uses another one for a call. ``draws`` holds the last forward's draws (one dict per op);
    ``forward(x, draws=...)`` replays given draws.
    """

    def __init__(self, policy: str = "color,translation,cutout", rng=None, translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5):
        super().__init__()
        self.policy = policy
        kwargs = {"translation": {"ratio": translation_ratio}, "cutout": {"ratio": cutout_ratio}}
        self.ops = [OPS[name](**kwargs.get(name, {})) for name in parse_policy(policy)]
        self.rng = make_rng(rng)
        self.draws = None
        self._cache_shape = None

    def extra_repr(self):
        return repr(self.policy)

    def forward(self, x, rng=None, draws=None):
        self._check_input(x, ndim=4)
        if draws is None:
            rng = self.rng if rng is None else make_rng(rng)
            draws = []
            for op in self.ops:  # each op draws for the shape it sees (all ops keep the shape)
                draws.append(op.draw(rng, x.shape))
        elif len(draws) != len(self.ops):
            raise ValueError(f"Augment: {len(draws)} sets of draws for {len(self.ops)} ops")
        for op, d in zip(self.ops, draws):
            x = op.apply(x, d)
        self.draws, self._cache_shape = draws, x.shape
        return x

    def backward(self, dy, accumulate=True, create_graph=False):
        """An affine op: backward, J c, s = 0 (docs/derivations.md, eq. AUG1)."""
        self._require(self._cache_shape)
        for op, d in zip(reversed(self.ops), reversed(self.draws)):
            dy = op.adjoint(dy, d)
        return dy

    def double_backward(self, c):
        """An affine op: backward, J c, s = 0 (docs/derivations.md, eq. AUG1)."""
        self._require(self._cache_shape)
        for op, d in zip(self.ops, self.draws):
            c = op.linear(c, d)
        return c, None
