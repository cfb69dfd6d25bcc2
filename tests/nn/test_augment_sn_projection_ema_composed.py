"""Issue 15's pieces composed as a Trainer would: DiffAugment in front of a spectrally
normalised projection critic (labels passed through ConditionalSequential), a cBN generator,
WGAN-GP, and the generator EMA."""
import numpy as np
from hypothesis import given, settings

import minigan.nn as nn
from minigan import losses, models_conditional as mc
from minigan.augment import Augment
from minigan.ema import EMA
from minigan.gradcheck import check_gradients
from minigan.optim import Adam
from minigan.training.players import backward_discriminator_loss
from minigan.penalty import gradient_penalty, input_gradient, interpolate, sample_norms
from strategies import seeds

F64 = np.float64


@settings(max_examples=10)
@given(seed=seeds())
def test_penalty_through_augment_and_sn_projection_critic(seed):
    rng = np.random.default_rng(seed)
    sn = lambda layer: nn.spectral_norm(layer, rng=rng)  # noqa: E731
    features = nn.Sequential(sn(nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=rng)), nn.Tanh(),
                             sn(nn.Conv2d(3, 2, 3, stride=2, padding=1, dtype=F64, rng=rng)), nn.Softplus(),
                             nn.GlobalSumPool2d())
    critic = nn.ProjectionCritic(features, 2, 3, dtype=F64, rng=rng, linear=sn(nn.Linear(2, 1, dtype=F64, rng=rng)))
    model = nn.ConditionalSequential(Augment("color,translation,cutout", rng=np.random.default_rng(seed)), critic)
    x, labels = rng.standard_normal((2, 2, 6, 6)), rng.integers(0, 3, 2)
    model.eval()  # u, v fixed: the finite differences see the same function
    aug = model[0]
    aug.rng = np.random.default_rng(seed)
    model.zero_grad()
    gradient_penalty(model, x, weight=10.0, labels=labels)
    params = dict(model.named_parameters())
    grads = {k: p.grad.copy() for k, p in params.items()}

    def penalty():
        aug.rng = np.random.default_rng(seed)  # replay the analytic pass's draws
        norms = sample_norms(input_gradient(model, x, labels))
        return 10.0 * np.mean(norms ** 2 - 2 * norms)

    # along 6 random directions of all weights at once (each layer is checked per element in
    # its own test file; this checks their composition)
    report = check_gradients(penalty, {k: p.data for k, p in params.items()}, grads, rng=rng,
                             per_element=False, n_directions=6)
    assert report.worst < 1e-6, str(report)


def test_a_few_float32_wgan_gp_steps_with_ema():
    rng = np.random.default_rng(0)
    G = mc.cbn_dcgan_generator(3, latent_dim=8, image_size=28, channels=1, base_width=4, rng=rng)
    D = nn.ConditionalSequential(Augment(rng=rng), mc.projection_dcgan_critic(
        3, image_size=28, channels=1, base_width=4, spectral_norm=True, rng=rng))
    ema = EMA(G, decay=0.9)
    opt_g, opt_d = Adam(list(G.parameters()), lr=1e-3), Adam(list(D.parameters()), lr=1e-3)
    real = np.tanh(rng.standard_normal((6, 1, 28, 28))).astype(np.float32)
    y = rng.integers(0, 3, 6)
    u_before = D[1].features[0].weight_u.copy()
    for _ in range(3):
        # critic step: the same Augment object augments real and fake (fresh draws per call)
        fake = G(rng.standard_normal((6, 8)).astype(np.float32), y)
        D.zero_grad()
        value, _, _ = backward_discriminator_loss(D, losses.critic_loss_wasserstein, real, fake, y)
        x_hat, _ = interpolate(real, fake, rng)
        gp = gradient_penalty(D, x_hat, 10.0, labels=y)
        assert np.isfinite(value) and np.isfinite(gp)
        opt_d.step()
        # generator step, then the EMA
        z = rng.standard_normal((6, 8)).astype(np.float32)
        fake = G(z, y)
        value, d_out = losses.generator_loss_wasserstein(D(fake, y))
        G.zero_grad()
        G.backward(D.backward(d_out, accumulate=False))
        assert all(np.isfinite(p.grad).all() for p in G.parameters())
        opt_g.step()
        ema.update()
    assert not np.array_equal(D[1].features[0].weight_u, u_before)  # the power iteration ran
    z = rng.standard_normal((4, 8)).astype(np.float32)
    sample = ema.module(z, np.array([0, 1, 2, 0]))
    assert sample.shape == (4, 1, 28, 28) and sample.dtype == np.float32 and np.isfinite(sample).all()
    live = dict(G.named_parameters())
    assert any(not np.array_equal(p.data, live[k].data) for k, p in ema.module.named_parameters())
