"""Hypothesis strategies and small builders shared by the tests."""
import numpy as np
from hypothesis import strategies as st


@st.composite
def conv_configs(draw, transposed=False):
    """(n, c_in, c_out, k, stride, padding, output_padding, h, w) with a non-empty output."""
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k - 1))
    output_padding = draw(st.integers(0, stride - 1)) if transposed else 0
    n, c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    low = 1 if transposed else max(1, k - 2 * padding)
    h, w = draw(st.integers(low, low + 4)), draw(st.integers(low, low + 4))
    if transposed:  # the output must be non-empty: (h − 1)s − 2p + k + op ≥ 1
        h_out = (min(h, w) - 1) * stride - 2 * padding + k + output_padding
        if h_out < 1:
            h = w = h + padding + 1
    return n, c_in, c_out, k, stride, padding, output_padding, h, w


def away_from_kinks(x, margin=1e-3):
    """Move entries within ``margin`` of 0 away from it, so finite differences of
    piecewise-linear activations (ReLU, LeakyReLU) never straddle the kink."""
    x = np.array(x, dtype=np.float64)
    near = np.abs(x) < margin
    x[near] = np.where(x[near] >= 0, margin, -margin)
    return x


def seeds():
    return st.integers(0, 2**32 - 1)


def off_kinks(model, *inputs, margin=1e-4):
    """True when no ReLU/LeakyReLU/ELU input lies within ``margin`` of 0 after model(*inputs).

    There ReLU's σ' and ELU's σ'' jump, so a difference quotient straddling the point
    carries an O(ε) error instead of O(ε⁴). The stencil moves values by ~2ε = 2e-5 times
    their sensitivity, well inside the margin.
    """
    from minigan.nn.activation import ELU, LeakyReLU, ReLU

    model(*inputs)
    return all(np.abs(m._cache_a).min() > margin for m in model.modules()
               if isinstance(m, (ReLU, LeakyReLU, ELU)))


def conditional_critic(image: bool, rng):
    """A float64 concatenation-conditional critic (a conv body for 3×3 images, else an MLP on 2-d
    points), a batch of 3 inputs and their labels (one repeated): shared by the first- and
    second-order tests."""
    import minigan.nn as nn

    f64 = np.float64
    if image:
        body = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, dtype=f64, rng=rng), nn.Tanh(), nn.Flatten(),
                             nn.Linear(2 * 9, 1, dtype=f64, rng=rng))
        x = rng.standard_normal((3, 1, 3, 3))
    else:
        body = nn.Sequential(nn.Linear(4, 3, dtype=f64, rng=rng), nn.ELU(), nn.Linear(3, 1, dtype=f64, rng=rng))
        x = rng.standard_normal((3, 2))
    model = nn.Conditional(body, num_classes=3, embedding_dim=2, dtype=f64, rng=rng)
    return model, x, np.array([0, 2, 2])


def smooth_mlp_critic(rng):
    """A float64 MLP critic on 2 features with smooth activations (no kinks for the stencils)."""
    import minigan.nn as nn

    f64 = np.float64
    return nn.Sequential(nn.Linear(2, 6, dtype=f64, rng=rng), nn.Tanh(), nn.Linear(6, 5, dtype=f64, rng=rng),
                         nn.Softplus(), nn.Linear(5, 4, dtype=f64, rng=rng), nn.ELU(),
                         nn.Linear(4, 1, dtype=f64, rng=rng))


def f_divergences():
    """Every f-divergence of minigan.losses, α and π drawn at non-default values on both sides of
    their special points: the f-GAN tests' list."""
    from minigan import losses as L

    divs = [L.f_divergence(n) for n in L.F_DIVERGENCE_NAMES if n not in ("alpha", "jensen-shannon-weighted")]
    divs += [L.f_divergence("alpha", alpha=a) for a in (-1.5, -0.5, 0.5, 2.0, 3.5)]
    divs += [L.f_divergence("jensen_shannon_weighted", pi=p) for p in (0.3, 0.5)]
    return divs


def conjugate_kinks(div):
    """v where f*∘g_f changes branch, C¹ but not C² (the edge of Pearson's and α > 1's exact conjugates)."""
    if div.name == "pearson":
        return [-2.0]
    if div.name == "alpha" and div.alpha > 1:
        return [-1.0 / (div.alpha - 1.0)]
    return []


# --- layer cases shared by the second-order (test_double_backward) and tangent (test_hvp) checks

def randomize_parameters(module, rng):
    """Every parameter away from its initial value (γ = 1 and β = 0 in particular)."""
    for _, p in module.named_parameters():
        p.data[...] = rng.uniform(0.5, 2.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)


def activation_layers():
    """name -> constructor of every activation, parameters at non-default values."""
    import minigan.nn as nn

    return {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.3), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
            "softplus": lambda: nn.Softplus(1.7), "elu": lambda: nn.ELU(0.6)}


def signed_input(shape, scale, rng):
    """Half the entries negative, half positive, none near 0: both branches of ReLU/LeakyReLU/ELU."""
    x = np.abs(rng.standard_normal(shape)) * scale
    x.reshape(-1)[::2] *= -1
    return away_from_kinks(x)


def reshaping_model(rng):
    """Flatten, Unflatten, Reshape between Linear layers and smooth activations, on (2, 3, 2, 2) inputs."""
    import minigan.nn as nn

    f64 = np.float64
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6, dtype=f64, rng=rng), nn.Unflatten(1, (2, 3)),
                          nn.Tanh(), nn.Reshape(6), nn.Linear(6, 4, dtype=f64, rng=rng), nn.Softplus(0.7),
                          nn.Linear(4, 1, dtype=f64, rng=rng))
    randomize_parameters(model, rng)
    return model, rng.standard_normal((2, 3, 2, 2))


def layernorm_case(batch, norm_shape, affine, rng):
    """A LayerNorm ("none", "weight" or "weight+bias" affine) with drawn parameters and its input;
    one or two normalised elements (degenerate: they normalise to 0 or ±1) get a third axis."""
    import minigan.nn as nn

    if np.prod(norm_shape) < 3:
        norm_shape = list(norm_shape) + [3]
    layer = nn.LayerNorm(tuple(norm_shape), elementwise_affine=affine != "none", bias=affine == "weight+bias",
                         dtype=np.float64)
    randomize_parameters(layer, rng)
    return layer, rng.standard_normal(tuple(batch) + tuple(norm_shape)) * 2 + 0.5


def batchnorm_case(n, c, spatial, affine, rng):
    """A BatchNorm1d/2d (eps 0.1) with drawn parameters and running statistics away from 0 and 1."""
    import minigan.nn as nn

    layer = (nn.BatchNorm2d if len(spatial) == 2 else nn.BatchNorm1d)(c, affine=affine, eps=0.1, dtype=np.float64)
    randomize_parameters(layer, rng)
    layer.running_mean[...] = rng.standard_normal(c)
    layer.running_var[...] = rng.uniform(0.2, 3.0, c)
    return layer
