"""The benchmark cases, built twice: once with minigan, once with PyTorch (same shapes, same math).

Each ``build_*`` returns a zero-argument ``step()`` closure that runs one training step on
pre-generated data (the random batches are drawn once, outside the timed region, so both
sides time the same arithmetic). Sampling z and the interpolation weights ε is inside the
step on both sides, as it is in a real training loop.

Cases
-----
a  wgan_gp_toy_critic   the official WGAN-GP toy critic step (Gulrajani et al., gan_toy.py):
                        D = MLP 2→512→512→512→1 with ReLU, G = MLP 2→512→512→512→2 with ReLU,
                        batch 256; fake = G(z) (no gradient), Wasserstein loss
                        E[D(fake)] − E[D(real)] + 10·mean(‖∇D(x̂)‖ − 1)², Adam(1e-4, (0.5, 0.9)).
b  wgan_gp_toy_gen      its generator step: −E[D(G(z))], gradient through D into G only
                        (D's parameters get no gradient, as gan_toy.py sets requires_grad=False),
                        Adam on G.
c  dcgan32              DCGAN for 32×32×1, base width 64, batch 64, nz = 100 (see DCGAN32_*),
                        one D step (BCE-with-logits on real and fake, fake detached) and one G
                        step (non-saturating loss, the fake of the D step reused, as in
                        PyTorch's examples/dcgan), Adam(2e-4, (0.5, 0.999)) for both.
d  dcgan32_wgan_gp      the same D without BatchNorm (and with conv biases, since nothing
                        re-centres the activations any more) as a WGAN-GP critic step, batch 64.
e  dcgan64              DCGAN for 64×64×3 (the original DCGAN shapes), batch 64, D + G step as (c).
f  dcgan32_plain        (c) written the plain way, as a user first writes it from the layer API:
                        the G step's ``G.backward(D.backward(d))`` with the default
                        ``accumulate=True`` (D's weight gradients asked for, as PyTorch's
                        examples/dcgan computes them; minigan's convolutions defer a weight
                        gradient until .grad is read, and D's next zero_grad drops them).
g  dcgan32_wgan_gp_plain (d) written the plain way: the critic on real and fake in two passes
                        (two forwards, two backwards) instead of one concatenated batch.

The batch of the DCGAN cases (c, d, f, g; 64 by default) is ``DC_BATCH``, set by
``python -m benchmarks.run --dc-batch N``.

DCGAN shapes (Radford et al.; PyTorch's examples/dcgan for 64 px, one block fewer for 32 px),
all convolutions 4×4 without bias (except in case d), LeakyReLU(0.2) in D, ReLU in G:

    D32:  1×32×32 → conv s2 p1 → 64×16×16 → conv s2 p1 + BN → 128×8×8 → conv s2 p1 + BN →
          256×4×4 → conv s1 p0 → 1×1×1 → flatten (N, 1)
    G32:  100×1×1 → convT s1 p0 + BN → 256×4×4 → convT s2 p1 + BN → 128×8×8 → convT s2 p1 + BN
          → 64×16×16 → convT s2 p1 → 1×32×32, tanh
    D64:  3×64×64 → 64×32×32 → 128×16×16 (BN) → 256×8×8 (BN) → 512×4×4 (BN) → 1×1×1
    G64:  100×1×1 → 512×4×4 (BN) → 256×8×8 (BN) → 128×16×16 (BN) → 64×32×32 (BN) → 3×64×64, tanh
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CASES = {
    "a": "wgan_gp_toy_critic",
    "b": "wgan_gp_toy_gen",
    "c": "dcgan32",
    "d": "dcgan32_wgan_gp",
    "e": "dcgan64",
    "f": "dcgan32_plain",
    "g": "dcgan32_wgan_gp_plain",
}
PLAIN = {"f": "c", "g": "d"}   # the plain-loop cases and the tuned step they mirror

TOY_WIDTH, TOY_BATCH = 512, 256
DC_BATCH, NZ = 64, 100
WGAN_LAMBDA = 10.0


@dataclass(frozen=True)
class ConvSpec:
    cin: int
    cout: int
    k: int
    s: int
    p: int
    bn: bool
    act: str  # "lrelu", "relu", "tanh", ""


def d_specs(channels: int, size: int, width: int = 64, bn: bool = True):
    """DCGAN discriminator for a size×size×channels image: halve until 4×4, then a 4×4 conv to 1."""
    specs, cin, cout, s = [], channels, width, size
    first = True
    while s > 4:
        specs.append(ConvSpec(cin, cout, 4, 2, 1, bn and not first, "lrelu"))
        cin, cout, s, first = cout, cout * 2, s // 2, False
    specs.append(ConvSpec(cin, 1, 4, 1, 0, False, ""))
    return specs


def g_specs(channels: int, size: int, width: int = 64):
    """DCGAN generator mirroring d_specs: nz×1×1 → width·2^k × 4×4 → ... → channels×size×size."""
    n_up = int(np.log2(size // 4))
    widths = [width * 2 ** i for i in reversed(range(n_up))]  # e.g. [256, 128, 64] for 32 px
    specs = [ConvSpec(NZ, widths[0], 4, 1, 0, True, "relu")]
    for a, b in zip(widths[:-1], widths[1:]):
        specs.append(ConvSpec(a, b, 4, 2, 1, True, "relu"))
    specs.append(ConvSpec(widths[-1], channels, 4, 2, 1, False, "tanh"))
    return specs


# --- FLOP counts (multiply-add = 2 FLOPs; only the matrix products are counted) ---------

def _linear_flops(batch, widths):
    return sum(2 * batch * a * b for a, b in zip(widths[:-1], widths[1:]))


def _conv_layer_flops(batch, spec: ConvSpec, in_size: int, transposed: bool):
    """FLOPs of one pass (forward, input gradient or weight gradient: all equal) and out size."""
    if transposed:
        out = (in_size - 1) * spec.s - 2 * spec.p + spec.k
        return 2 * batch * in_size * in_size * spec.cin * spec.cout * spec.k * spec.k, out
    out = (in_size + 2 * spec.p - spec.k) // spec.s + 1
    return 2 * batch * out * out * spec.cin * spec.cout * spec.k * spec.k, out


def _net_flops(batch, specs, in_size, transposed):
    per_layer, size = [], in_size
    for spec in specs:
        f, size = _conv_layer_flops(batch, spec, size, transposed)
        per_layer.append(f)
    return per_layer


def case_flops(case: str, minigan: bool = False) -> float:
    """Matrix-product FLOPs of one step, counted from the math both engines must do.

    Passes: forward F, input gradient B (skipped for a first layer whose input needs none),
    weight gradient W; each costs the same number of FLOPs for a given layer and batch.
    ``minigan=True`` leaves out what minigan does not compute (D's weight gradient in the
    DCGAN G steps): the count behind the floor, the step's time at the ceiling rate.
    """
    if case in ("a", "b"):
        b = TOY_BATCH
        d_w = [2, TOY_WIDTH, TOY_WIDTH, TOY_WIDTH, 1]
        g_w = [2, TOY_WIDTH, TOY_WIDTH, TOY_WIDTH, 2]
        f_d, f_g = _linear_flops(b, d_w), _linear_flops(b, g_w)
        first_d = 2 * b * d_w[0] * d_w[1]
        if case == "a":
            # G forward; D forward on real, fake, x̂ (3F); loss backward real+fake (2·(B − first) + 2W);
            # input gradient on x̂ (B, all layers); double backward J·c (F) + weight term (W).
            return f_g + 3 * f_d + 2 * (f_d - first_d) + 2 * f_d + f_d + f_d + f_d
        # G forward, D forward, D input gradient, G backward (B − first + W)
        return f_g + f_d + f_d + (f_g - 2 * b * g_w[0] * g_w[1]) + f_g
    if case == "f":   # D's weight gradients in the G step: asked for, deferred, never computed
        return case_flops("c", minigan)
    if case == "g":
        return case_flops("d", minigan)
    if case in ("c", "e"):
        size, ch = (32, 1) if case == "c" else (64, 3)
        b = DC_BATCH
        fd = _net_flops(b, d_specs(ch, size), size, False)
        fg = _net_flops(b, g_specs(ch, size), 1, True)
        sd, sg = sum(fd), sum(fg)
        # G forward; D step: D fwd real + fake, D backward (B − first layer's input grad + W) × 2;
        # G step: D fwd fake, D input gradient (all layers), D weight gradient (PyTorch computes
        # it; minigan skips it, counted anyway so both share one FLOP count), G backward.
        d_bwd = (sd - fd[0]) + sd
        g_step_d_weight = 0 if minigan else sd
        return sg + 2 * sd + 2 * d_bwd + sd + sd + g_step_d_weight + (sg - fg[0]) + sg
    if case == "d":
        b = DC_BATCH
        fd = _net_flops(b, d_specs(1, 32, bn=False), 32, False)
        fg = _net_flops(b, g_specs(1, 32), 1, True)
        sd, sg = sum(fd), sum(fg)
        return sg + 3 * sd + 2 * (sd - fd[0]) + 2 * sd + sd + sd + sd
    raise KeyError(case)


# --- data ---------------------------------------------------------------------------------

def toy_real(rng, n=TOY_BATCH):
    """8 Gaussians on a ring of radius 2 (scaled as gan_toy.py), std 0.02."""
    centers = np.array([(np.cos(t), np.sin(t)) for t in np.arange(8) * np.pi / 4]) * 2
    x = centers[rng.integers(0, 8, n)] + 0.02 * rng.standard_normal((n, 2))
    return (x / 1.414).astype(np.float32)


def image_real(rng, ch, size, n=None):
    n = DC_BATCH if n is None else n
    return np.tanh(rng.standard_normal((n, ch, size, size))).astype(np.float32)


# --- networks, in minigan.nn or torch.nn ------------------------------------------------

def _mlp(nn, widths, **init):
    """Linear layers with ReLU between, in ``nn`` (minigan.nn or torch.nn: same class names);
    ``init`` goes to each Linear (minigan's ``rng``)."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, **init))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _conv_net(nn, specs, transposed, bias=False, **init):
    """The DCGAN stack of ``specs`` in ``nn`` (minigan.nn or torch.nn); ``init`` goes to each
    convolution (minigan's ``rng``)."""
    layers = []
    for s in specs:
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        layers.append(conv(s.cin, s.cout, s.k, stride=s.s, padding=s.p, bias=bias, **init))
        if s.bn:
            layers.append(nn.BatchNorm2d(s.cout))
        if s.act == "lrelu":
            layers.append(nn.LeakyReLU(0.2))
        elif s.act == "relu":
            layers.append(nn.ReLU())
        elif s.act == "tanh":
            layers.append(nn.Tanh())
    if not transposed:
        layers.append(nn.Flatten())
    return nn.Sequential(*layers)


# --- minigan --------------------------------------------------------------------------------

def wgan_generator_step(D, G, opt_g, noise):
    """Case (b) with minigan, on any array module: −mean D(G(z)) back through D (no D
    gradients) into G, then G's Adam step."""
    from minigan.losses import generator_loss_wasserstein
    opt_g.zero_grad()
    out = D(G(noise()))
    _, d_out = generator_loss_wasserstein(out)
    G.backward(D.backward(d_out, accumulate=False))
    opt_g.step()


def build_minigan(case: str, seed: int = 0):
    from minigan import nn
    from minigan.losses import (critic_loss_wasserstein, discriminator_loss_minimax,
                                generator_loss_nonsaturating)
    from minigan.optim import Adam
    from minigan.penalty import gradient_penalty, interpolate

    rng = np.random.default_rng(seed)

    def wgan_critic_step(D, G, opt_d, real, noise):
        n = real.shape[0]
        fake = G(noise())
        opt_d.zero_grad()
        # real and fake in one pass (no batch statistics in a WGAN-GP critic)
        out = D(np.concatenate([real, fake]))
        _, (d_real, d_fake) = critic_loss_wasserstein(out[:n], out[n:])
        D.backward(np.concatenate([d_real, d_fake]))
        x_hat, _ = interpolate(real, fake, rng)
        gradient_penalty(D, x_hat, WGAN_LAMBDA)
        opt_d.step()

    if case in ("a", "b"):
        D = _mlp(nn, [2, TOY_WIDTH, TOY_WIDTH, TOY_WIDTH, 1], rng=rng)
        G = _mlp(nn, [2, TOY_WIDTH, TOY_WIDTH, TOY_WIDTH, 2], rng=rng)
        opt_d = Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
        opt_g = Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
        real = toy_real(rng)

        def noise():
            return rng.standard_normal((TOY_BATCH, 2), dtype=np.float32)

        if case == "a":
            return _with_models(lambda: wgan_critic_step(D, G, opt_d, real, noise), D, G)

        return _with_models(lambda: wgan_generator_step(D, G, opt_g, noise), D, G)

    def plain_critic_step(D, G, opt_d, real, noise):
        """The README's first critic loop: −E[D(x)] and +E[D(x̃)] as two passes."""
        n = real.shape[0]
        fake = G(noise())
        opt_d.zero_grad()
        out = D(real)
        D.backward(np.full_like(out, -1 / n))
        out = D(fake)
        D.backward(np.full_like(out, 1 / n))
        x_hat, _ = interpolate(real, fake, rng)
        gradient_penalty(D, x_hat, WGAN_LAMBDA)
        opt_d.step()

    if case in ("d", "g"):
        D = _conv_net(nn, d_specs(1, 32, bn=False), False, bias=True, rng=rng)
        G = _conv_net(nn, g_specs(1, 32), True, rng=rng)
        nn.dcgan_init(D, rng), nn.dcgan_init(G, rng)
        opt_d = Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
        real = image_real(rng, 1, 32)

        def noise():
            return rng.standard_normal((DC_BATCH, NZ, 1, 1), dtype=np.float32)
        critic_step = wgan_critic_step if case == "d" else plain_critic_step
        return _with_models(lambda: critic_step(D, G, opt_d, real, noise), D, G)

    if case in ("c", "e", "f"):
        size, ch = (64, 3) if case == "e" else (32, 1)
        plain = case == "f"
        D = nn.dcgan_init(_conv_net(nn, d_specs(ch, size), False, rng=rng), rng)
        G = nn.dcgan_init(_conv_net(nn, g_specs(ch, size), True, rng=rng), rng)
        opt_d = Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        real = image_real(rng, ch, size)

        def dcgan_step():
            z = rng.standard_normal((DC_BATCH, NZ, 1, 1), dtype=np.float32)
            fake = G(z)
            # D step: BN batch statistics per pass, so real and fake go through separately
            opt_d.zero_grad()
            out_real = D(real)
            _, (d_real, _) = discriminator_loss_minimax(out_real, out_real)  # d_real needs only out_real
            D.backward(d_real)
            out_fake = D(fake)
            _, (_, d_fake) = discriminator_loss_minimax(out_real, out_fake)
            D.backward(d_fake)
            opt_d.step()
            # G step: the same fake through the updated D, gradient into G only
            opt_g.zero_grad()
            out = D(fake)
            _, d_out = generator_loss_nonsaturating(out)
            if plain:   # D's weight gradients asked for too (deferred; D's next zero_grad drops them)
                G.backward(D.backward(d_out))
            else:
                G.backward(D.backward(d_out, accumulate=False))
            opt_g.step()
        return _with_models(dcgan_step, D, G)
    raise KeyError(case)


def _with_models(step, D, G):
    """Attach the models to a step closure (for equivalence checks): step.D, step.G."""
    step.D, step.G = D, G
    return step


# --- PyTorch ----------------------------------------------------------------------------------

def _t_dcgan_init(tnn, module):
    for m in module.modules():
        if isinstance(m, (tnn.Conv2d, tnn.ConvTranspose2d)):
            tnn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                tnn.init.zeros_(m.bias)
        elif isinstance(m, tnn.BatchNorm2d):
            tnn.init.normal_(m.weight, 1.0, 0.02)
            tnn.init.zeros_(m.bias)
    return module


def build_torch(case: str, seed: int = 0, device: str = "cpu"):
    """PyTorch's step for ``case`` on ``device`` ("cpu" here, "cuda" in benchmarks/gpu.py); the
    plain-loop cases (f, g) are timed against the PyTorch step of the case they mirror."""
    case = PLAIN.get(case, case)
    import torch
    from torch import autograd
    from torch import nn as tnn
    from torch.nn import functional as tf

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)

    def wgan_critic_step(D, G, opt_d, real, noise):
        for p in D.parameters():
            p.requires_grad_(True)
        with torch.no_grad():
            fake = G(noise())
        opt_d.zero_grad()
        loss = D(fake).mean() - D(real).mean()
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=dev)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        out = D(x_hat)
        g, = autograd.grad(out, x_hat, torch.ones_like(out), create_graph=True)
        gp = WGAN_LAMBDA * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        (loss + gp).backward()
        opt_d.step()

    if case in ("a", "b"):
        D = _mlp(tnn, [2, TOY_WIDTH, TOY_WIDTH, TOY_WIDTH, 1]).to(dev)
        G = _mlp(tnn, [2, TOY_WIDTH, TOY_WIDTH, TOY_WIDTH, 2]).to(dev)
        opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
        opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
        real = torch.from_numpy(toy_real(rng)).to(dev)

        def noise():
            return torch.randn(TOY_BATCH, 2, device=dev)

        if case == "a":
            return lambda: wgan_critic_step(D, G, opt_d, real, noise)

        def gen_step():
            for p in D.parameters():
                p.requires_grad_(False)
            opt_g.zero_grad()
            loss = -D(G(noise())).mean()
            loss.backward()
            opt_g.step()
        return gen_step

    if case == "d":
        D = _t_dcgan_init(tnn, _conv_net(tnn, d_specs(1, 32, bn=False), False, bias=True)).to(dev)
        G = _t_dcgan_init(tnn, _conv_net(tnn, g_specs(1, 32), True)).to(dev)
        opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
        real = torch.from_numpy(image_real(rng, 1, 32)).to(dev)

        def noise():
            return torch.randn(DC_BATCH, NZ, 1, 1, device=dev)
        return lambda: wgan_critic_step(D, G, opt_d, real, noise)

    if case in ("c", "e"):
        size, ch = (64, 3) if case == "e" else (32, 1)
        D = _t_dcgan_init(tnn, _conv_net(tnn, d_specs(ch, size), False)).to(dev)
        G = _t_dcgan_init(tnn, _conv_net(tnn, g_specs(ch, size), True)).to(dev)
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        real = torch.from_numpy(image_real(rng, ch, size)).to(dev)
        ones, zeros = torch.ones(DC_BATCH, 1, device=dev), torch.zeros(DC_BATCH, 1, device=dev)

        def dcgan_step():
            fake = G(torch.randn(DC_BATCH, NZ, 1, 1, device=dev))
            opt_d.zero_grad()
            tf.binary_cross_entropy_with_logits(D(real), ones).backward()
            tf.binary_cross_entropy_with_logits(D(fake.detach()), zeros).backward()
            opt_d.step()
            opt_g.zero_grad()
            tf.binary_cross_entropy_with_logits(D(fake), ones).backward()
            opt_g.step()
        return dcgan_step
    raise KeyError(case)
