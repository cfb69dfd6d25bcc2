"""BatchNorm1d/2d and LayerNorm.

Both normalise x over a set of axes (a "group": the batch and spatial axes per channel
for BatchNorm, the trailing normalized_shape per sample for LayerNorm), with
    μ = mean(x),  var = mean((x − μ)²),  r = (var + ε)^{-1/2},  x̂ = (x − μ)·r,  y = γ x̂ + β.
Let D be the group size and, for any w on a group,
    P(w) = w − mean(w) − x̂ · mean(w x̂).
The Jacobian of x̂ with respect to x is exactly r·P (ε included; P is symmetric), so with
v = γ·g (g the upstream gradient)
    backward      dx = r·P(v),  dγ += Σ g x̂,  dβ += Σ g.
LayerNorm's second-order pass (c a cotangent on dx; full derivation in docs/derivations.md):
    J·c = γ · r·P(c),  dγ += Σ r·P(c)·g,  nothing for β,
    s = ∂⟨c, r·P(v)⟩/∂x = −r² [ (mean(cv) − mean(c)mean(v) − m_v m_c)·x̂ + m_c P(v) + m_v P(c) ]
    with m_v = mean(v x̂), m_c = mean(c x̂).
BatchNorm in training mode couples the samples of a batch, while the gradient penalty is a
per-sample quantity, so its second-order pass raises instead of computing something else.
In eval mode it is a fixed per-channel affine map and has an exact (affine) second-order pass.

Synchronised BatchNorm (data-parallel training, ``comm`` set): the group is the global batch
spread over the ranks. Forward: μ = Σ_ranks Σx / M, var = Σ_ranks Σ(x − μ)² / M (two
allreduces, float64 sums; M the global count). Backward: the means in P are global too, so
two more reduced sums, Σdy and Σdy·x̂ per channel (the local dβ and dγ), give
    dx = r·γ·(dy − Σ_g dy/M − x̂·Σ_g(dy·x̂)/M)
while dγ, dβ accumulate the local sums (the trainer's gradient averaging adds them up).
Derivation in docs/derivations.md ("Synchronised BatchNorm").

Tangents (docs/tangents.md, section "Normalisation"), with ẋ, γ̇, β̇, ḋy and v̇ = γ̇·dy + γ·ḋy:
    x̂̇ = r·P(ẋ),  ẏ = γ x̂̇ + γ̇ x̂ + β̇,  R{dγ} = Σ (ḋy x̂ + dy x̂̇),  R{dβ} = Σ ḋy,
    R{dx} = ṙ·P(v) + r·[P(v̇) − x̂̇·mean(v x̂) − x̂·mean(v x̂̇)],  ṙ = −r²·mean(x̂ ẋ)
(in training mode x̂̇ and ẏ are one call of ``batch_norm_tangent_forward``, and dx, R{dx} and the
four parameter sums one call of ``batch_norm_tangent_backward``: per-channel sums in one pass, then
one elementwise pass each). BatchNorm in
training mode has this exact tangent (the batch is fixed; its statistics are functions of it);
in eval mode x̂̇ = r·ẋ and R{dx} = r·v̇. Synchronised BatchNorm has no tangent pass (it raises).

Training-mode batch norm and layer norm run through the kernel seam
(``batch_norm_forward``/``batch_norm_backward``, ``layer_norm_forward``/``layer_norm_backward``
in :mod:`minigan.functional`, written with :func:`normalize` and :func:`project` below), so the
Numba kernels of ``kernels/norm.py`` can replace them for NumPy arrays.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module, kernel
from ..functional import normalize, project, project_tangent  # noqa: F401 - the formulas, re-exported here
from ._checks import _positive_int
from .module import DoubleBackwardUnsupported, Module, Parameter, TangentUnsupported, _check_float_dtype


class _BatchNorm(Module):
    _ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 dtype=np.float32, rng=None, comm=None):
        super().__init__()
        name = type(self).__name__
        _positive_int(num_features, name, "num_features")
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must lie in [0, 1], got {momentum!r}")
        dtype = _check_float_dtype(dtype, name)
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        self._cache = self._cache_g = None  # (x̂, r, ...): x itself is never needed again
        # a communicator (minigan.distributed) makes training-mode statistics global over its
        # ranks (synchronised BatchNorm); None: this process's batch alone (the default)
        object.__setattr__(self, "comm", comm)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"

    def _shape(self, x):
        return (1, -1) + (1,) * (x.ndim - 2)

    def _axes(self, x):
        return (0,) + tuple(range(2, x.ndim))

    def _gamma(self, x):
        return self.weight.data.reshape(self._shape(x)) if self.affine else 1.0

    def forward(self, x):
        """BatchNorm forward; eval mode uses the running statistics (docs/derivations.md, eq. L6)."""
        self._check_input(x, ndim=self._ndims, channels=self.num_features)
        shape = self._shape(x)
        if self.training:
            count = x.size // x.shape[1]
            if count < 2:
                raise ValueError(f"{type(self).__name__}: training mode needs more than one value per "
                                 f"channel, got input shape {tuple(x.shape)}")
            # x̂ = (x − μ)·r, y = γ x̂ + β with the batch's μ and biased var
            gamma, beta = (self.weight.data, self.bias.data) if self.affine else (None, None)
            if self._synced():
                y, xhat, r, mean, var, count = self._sync_forward(x)
                self.running_mean[...] = (1 - self.momentum) * self.running_mean + self.momentum * mean
                self.running_var[...] = ((1 - self.momentum) * self.running_var
                                         + self.momentum * var * (count / (count - 1)))
                self.num_batches_tracked += 1
                self._cache = (xhat, r, True)
                return y
            y, xhat, r, mean, var = kernel("batch_norm_forward", x)(x, gamma, beta, self.eps)
            m = self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean + m * mean
            self.running_var[...] = (1 - m) * self.running_var + m * var * (count / (count - 1))
            self.num_batches_tracked += 1
            self._cache = (xhat, r, True)
            return y
        r = 1.0 / (self.running_var.reshape(shape) + self.eps) ** 0.5
        xhat = (x - self.running_mean.reshape(shape)) * r
        self._cache = (xhat, r, False)
        y = self._gamma(x) * xhat
        return y + self.bias.data.reshape(shape) if self.affine else y

    def backward(self, dy, accumulate=True, create_graph=False):
        """BatchNorm backward, training or eval mode (docs/derivations.md, eqs. L5, L6)."""
        xhat, r, training = self._require(self._cache)
        if create_graph:
            self._cache_g = dy
        if training and self._synced():
            dx, dgamma, dbeta = self._sync_backward(dy, xhat, r)
        elif training:
            # dx = r·P(γ·dy), dγ = Σ dy·x̂, dβ = Σ dy
            dx, dgamma, dbeta = kernel("batch_norm_backward", dy)(
                dy, xhat, r, self.weight.data if self.affine else None)
        else:
            axes = self._axes(xhat)
            dx = r * (self._gamma(xhat) * dy)
            dgamma, dbeta = (dy * xhat).sum(axis=axes), dy.sum(axis=axes)
        if accumulate:
            self._add_grads(dgamma, dbeta)
        return dx

    def _add_grads(self, dgamma, dbeta):
        """dγ, dβ into the affine parameters' .grad (nothing without them)."""
        if self.affine:
            self.weight.grad += dgamma
            self.bias.grad += dbeta

    # --- synchronised statistics (self.comm set, several ranks) ---------------------------
    def _synced(self):
        return self.comm is not None and self.comm.size > 1

    def _sync_forward(self, x):
        """Training-mode forward with μ and var over the global batch (two allreduces of
        per-channel float64 sums; the second pass around the global μ, as normalize() does).
        (docs/derivations.md, eq. DP3)"""
        xp, axes, shape = array_module(x), self._axes(x), self._shape(x)
        sums = xp.zeros(self.num_features + 1, dtype=np.float64)
        sums[:-1] = x.sum(axis=axes, dtype=np.float64)
        sums[-1] = x.size // x.shape[1]
        self.comm.allreduce(sums)
        count = float(sums[-1])
        if count < 2:
            raise ValueError(f"{type(self).__name__}: training mode needs more than one value per "
                             f"channel over all ranks, got {int(count)}")
        mean = sums[:-1] / count
        xc = x - mean.astype(x.dtype).reshape(shape)
        sq = xp.ascontiguousarray((xc * xc).sum(axis=axes, dtype=np.float64))
        var = self.comm.allreduce(sq) / count
        r = (1.0 / (var + self.eps) ** 0.5).astype(x.dtype).reshape(shape)
        xhat = xc * r
        y = self._gamma(x) * xhat + (self.bias.data.reshape(shape) if self.affine else 0)
        self._count = count
        return y, xhat, r, mean.astype(x.dtype), var.astype(x.dtype), count

    def _sync_backward(self, dy, xhat, r):
        """dx = r·γ·(dy − Σ_g dy/M − x̂·Σ_g(dy x̂)/M) with the sums Σ_g over every rank;
        returns the local dγ = Σ dy·x̂, dβ = Σ dy (reduced later with all other gradients).
        (docs/derivations.md, eqs. DP4, DP5)"""
        xp, axes, shape = array_module(dy), self._axes(dy), self._shape(dy)
        dgamma, dbeta = (dy * xhat).sum(axis=axes), dy.sum(axis=axes)
        sums = xp.concatenate([dbeta.astype(np.float64), dgamma.astype(np.float64)])
        self.comm.allreduce(sums)
        c = self.num_features
        mean_dy = (sums[:c] / self._count).astype(dy.dtype).reshape(shape)
        mean_dy_xhat = (sums[c:] / self._count).astype(dy.dtype).reshape(shape)
        dx = r * (self._gamma(dy) * (dy - mean_dy - xhat * mean_dy_xhat))
        return dx, dgamma, dbeta

    def double_backward(self, c):
        """BatchNorm in eval mode, second order (training mode refused)
        (docs/derivations.md, eq. DB11).
        """
        g = self._require(self._cache_g, "backward(create_graph=True)")
        _, r, training = self._cache
        if training:
            raise DoubleBackwardUnsupported(
                f"{type(self).__name__} in training mode cannot sit in a critic under the gradient "
                "penalty: the penalty is a per-sample quantity ‖∇ₓD(x̂_i)‖, but batch statistics make "
                "every output depend on every sample of the batch. Use LayerNorm (as WGAN-GP does) or "
                "no normalisation in the critic.")
        # eval mode: y = γ r (x − μ_run) + β is affine per channel.
        rc = r * c
        if self.affine:
            self.weight.grad += (rc * g).sum(axis=self._axes(c))
        return self._gamma(c) * rc, None


    def _refuse_synced_tangent(self):
        if self._cache[2] and self._synced():
            raise TangentUnsupported(f"{type(self).__name__}: synchronised BatchNorm (comm over several ranks) "
                                     "has no tangent pass; compute Hessian-vector products in one process")

    def tangent_forward(self, x_dot):
        xhat, r, training = self._require(self._cache)
        self._refuse_synced_tangent()
        if training:   # x̂̇ = r·P(ẋ), ẏ = γ x̂̇ + γ̇ x̂ + β̇: one kernel
            params = ((self.weight.data, self.weight.tangent_or_zeros(), self.bias.tangent_or_zeros())
                      if self.affine else (None, None, None))
            y_dot, xhat_dot = kernel("batch_norm_tangent_forward", x_dot)(x_dot, xhat, r, *params)
            self._keep_tangent(self._cache, (x_dot, xhat_dot))
            return y_dot
        xhat_dot = r * x_dot   # running statistics: x̂̇ = r·ẋ
        self._keep_tangent(self._cache, (x_dot, xhat_dot))
        if not self.affine:
            return xhat_dot
        shape = self._shape(x_dot)
        return (self._gamma(x_dot) * xhat_dot + self.weight.tangent_or_zeros().reshape(shape) * xhat
                + self.bias.tangent_or_zeros().reshape(shape))

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        xhat, r, training = self._require(self._cache)
        x_dot, xhat_dot = self._kept_tangent(self._cache)
        if not training:   # running statistics: dx = r·γ·dy, R{dx} = r·(γ·ḋy + γ̇·dy)
            return self._eval_tangent_backward(dy, dy_dot, xhat, r, xhat_dot, accumulate)
        gamma, gamma_dot = (self.weight.data, self.weight.tangent_or_zeros()) if self.affine else (None, None)
        dx, dx_dot, dgamma, dbeta, dgamma_dot, dbeta_dot = kernel("batch_norm_tangent_backward", dy)(
            dy, dy_dot, xhat, xhat_dot, x_dot, r, gamma, gamma_dot)
        if self.affine:
            self.weight.accumulate_tangent(dgamma_dot)
            self.bias.accumulate_tangent(dbeta_dot)
        if accumulate:
            self._add_grads(dgamma, dbeta)
        return dx, dx_dot

    def _eval_tangent_backward(self, dy, dy_dot, xhat, r, xhat_dot, accumulate):
        axes = self._axes(dy)
        v_dot = dy_dot
        if self.affine:
            self.weight.accumulate_tangent(lambda: (dy_dot * xhat + dy * xhat_dot).sum(axis=axes))
            self.bias.accumulate_tangent(lambda: dy_dot.sum(axis=axes))
            v_dot = self._gamma(dy) * dy_dot + self.weight.tangent_or_zeros().reshape(self._shape(dy)) * dy
        return self.backward(dy, accumulate=accumulate), r * v_dot


class BatchNorm1d(_BatchNorm):
    """Normalises (N, C) or (N, C, L) inputs per channel."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Normalises (N, C, H, W) inputs per channel."""
    _ndims = (4,)


class LayerNorm(Module):
    """Normalises each sample over its trailing ``normalized_shape`` dims (PyTorch semantics)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=np.float32, rng=None):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise ValueError(f"LayerNorm: normalized_shape must be non-empty positive sizes, got "
                             f"{normalized_shape!r}")
        if not eps > 0:
            raise ValueError(f"LayerNorm: eps must be > 0, got {eps!r}")
        dtype = _check_float_dtype(dtype, "LayerNorm")
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype)) if elementwise_affine and bias else None
        self._cache = self._cache_g = None  # (x̂, r, ...): x itself is never needed again

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

    def _axes(self, x):
        return tuple(range(x.ndim - len(self.normalized_shape), x.ndim))

    def _batch_axes(self, x):
        return tuple(range(x.ndim - len(self.normalized_shape)))

    def _gamma(self):
        return self.weight.data if self.weight is not None else 1.0

    def forward(self, x):
        self._check_input(x)
        k = len(self.normalized_shape)
        if x.ndim <= k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input of shape (N, ..., {', '.join(map(str, self.normalized_shape))})"
                             f", got {tuple(x.shape)}")
        y, xhat, r = kernel("layer_norm_forward", x)(
            x, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, self.eps, k)
        self._cache = (xhat, r)
        return y

    def backward(self, dy, accumulate=True, create_graph=False):
        """LayerNorm backward (docs/derivations.md, eq. L7)."""
        xhat, r = self._require(self._cache)
        if create_graph:
            self._cache_g = dy
        # dx = r·P(γ·dy), dγ = Σ_batch dy·x̂, dβ = Σ_batch dy
        dx, dgamma, dbeta = kernel("layer_norm_backward", dy)(
            dy, xhat, r, None if self.weight is None else self.weight.data, len(self.normalized_shape))
        if accumulate:
            if self.weight is not None:
                self.weight.grad += dgamma
            if self.bias is not None:
                self.bias.grad += dbeta
        return dx

    def double_backward(self, c):
        """LayerNorm, second order: J c, the gamma term and s
        (docs/derivations.md, eqs. DB9, DB10).
        """
        g = self._require(self._cache_g, "backward(create_graph=True)")
        xhat, r = self._cache
        axes = self._axes(c)
        v = self._gamma() * g
        pc, pv = project(c, xhat, axes), project(v, xhat, axes)
        if self.weight is not None:
            self.weight.grad += (r * pc * g).sum(axis=self._batch_axes(c))

        def mean(a):
            return a.mean(axis=axes, keepdims=True)

        m_v, m_c = mean(v * xhat), mean(c * xhat)
        a = mean(c * v) - mean(c) * mean(v) - m_v * m_c
        s = -(r * r) * (a * xhat + m_c * pv + m_v * pc)
        return self._gamma() * r * pc, s

    def tangent_forward(self, x_dot):
        xhat, r = self._require(self._cache)
        k = len(self.normalized_shape)
        xhat_dot = kernel("layer_norm_backward", x_dot)(x_dot, xhat, r, None, k)[0]   # r·P(ẋ)
        self._keep_tangent(self._cache, (x_dot, xhat_dot))
        y_dot = self._gamma() * xhat_dot
        if self.weight is not None:
            y_dot = y_dot + self.weight.tangent_or_zeros() * xhat
        if self.bias is not None:
            y_dot = y_dot + self.bias.tangent_or_zeros()
        return y_dot

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        xhat, r = self._require(self._cache)
        x_dot, xhat_dot = self._kept_tangent(self._cache)
        batch_axes = self._batch_axes(dy)
        if self.weight is not None:
            self.weight.accumulate_tangent(lambda: (dy_dot * xhat + dy * xhat_dot).sum(axis=batch_axes))
        if self.bias is not None:
            self.bias.accumulate_tangent(lambda: dy_dot.sum(axis=batch_axes))
        v = self._gamma() * dy
        v_dot = self._gamma() * dy_dot
        if self.weight is not None:
            v_dot = v_dot + self.weight.tangent_or_zeros() * dy
        dx = self.backward(dy, accumulate=accumulate)
        rp_v_dot = kernel("layer_norm_backward", v_dot)(v_dot, xhat, r, None, len(self.normalized_shape))[0]
        return dx, project_tangent(dx, xhat, r, x_dot, xhat_dot, v, rp_v_dot, self._axes(dy))
