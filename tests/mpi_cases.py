"""Cases run under ``mpiexec -n 2 python tests/mpi_cases.py CASE OUT`` by tests/distributed/test_distributed.py.

Each case either writes rank 0's results to OUT (an .npz the test compares with a
single-process run) or checks its property itself and exits non-zero with a message.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minigan import distributed, nn  # noqa: E402
from minigan.config import TrainConfig  # noqa: E402
from minigan.train import Trainer  # noqa: E402

# tiny versions of the two targets: the toy WGAN-GP critic and a DCGAN with BatchNorm
WGANGP = dict(loss="wgan-gp", model="mlp", data="8gaussians", hidden=32, depth=2, batch_size=16,
              n_critic=2, gp_weight=0.1, seed=3, eval_samples=100, optimizer="sgd", lr_d=0.05, lr_g=0.05)
DCGAN = dict(loss="nonsaturating", model="dcgan", data="digits", image_size=32, base_width=4, latent_dim=8,
             batch_size=8, seed=5)
# BEGAN: k_t and M must come from the global losses; conditional: the labels are sliced too
BEGAN = dict(loss="began", model="mlp", data="digits", hidden=32, depth=1, batch_size=16, seed=2,
             began_lambda_k=0.1, optimizer="sgd", lr_d=0.05, lr_g=0.05)
CMLP = dict(loss="nonsaturating", model="cmlp", data="digits", hidden=32, depth=1, batch_size=16, seed=4,
            optimizer="sgd", lr_d=0.05, lr_g=0.05)
# relativistic average: E[D(x)], E[D(x̃)] and the gradients' mean terms over the global batch
# (measured: 5e-7 of each array's scale; with per-rank means 0.6, with per-rank gradient mean
# terms only 4e-2 — lr 0.5 makes that slip visible, at 0.05 it moved the weights by 8e-5 only)
RAGAN = dict(loss="ragan", model="mlp", data="8gaussians", hidden=32, depth=2, batch_size=16, n_critic=2,
             seed=6, eval_samples=100, optimizer="sgd", lr_d=0.5, lr_g=0.5)
# DRAGAN: the perturbation's scale std(x) over the global batch (draws sliced as ever)
DRAGAN = dict(WGANGP, penalty="dragan", gp_weight=10.0, seed=8)
# DiffAugment: every op's per-sample draws made for the global batch and sliced
DCGAN_AUGMENT = dict(DCGAN, sync_batchnorm=True, augment="color,translation,cutout")
# WGAN-div over real and fake together: each rank's 2m points, a plain per-sample mean
WGANDIV = dict(WGANGP, penalty="wgan-div", seed=9)
# the update rules (--update): n_critic 1, the penalty averaged over the ranks like the loss
UPDATES = {name: dict(WGANGP, n_critic=1, update=name, seed=10) for name in ("simultaneous", "extragradient",
                                                                             "optimistic")}
UPDATES["consensus"] = dict(UPDATES["simultaneous"], update="consensus", loss="hinge", penalty="none",
                            consensus_gamma=0.5)
# cgd: every J·v of the solve averaged over the ranks (J of the global batch), so both ranks take one step
UPDATES["sga"] = dict(UPDATES["consensus"], update="sga")
UPDATES["cgd"] = dict(UPDATES["consensus"], update="cgd", lr_d=0.3, lr_g=0.3, cgd_maxiter=4, cgd_tol=1e-9)
UPDATES["lookahead"] = dict(WGANGP, update="lookahead", lookahead_k=2, lookahead_alpha=0.3, seed=10)  # k=2 of 3 steps
STEPS = 3


def run_steps(config: dict, steps: int = STEPS, comm=None) -> Trainer:
    trainer = Trainer(TrainConfig.from_dict(dict(config, out="unused")), comm=comm)
    for _ in range(steps):
        trainer.train_step()
    return trainer


def state_arrays(trainer) -> dict:
    """Every parameter and buffer of G and D, keyed 'G.<name>' / 'D.<name>'."""
    out = {}
    for tag, model in (("G", trainer.G), ("D", trainer.D)):
        for name, value in model.state_dict().items():
            out[f"{tag}.{name}"] = np.asarray(value)
    if trainer.scheme.state_key == "began":
        out["began.k"] = np.asarray(trainer.loss.balance.k)
    return out


def case_train(out, config):
    trainer = run_steps(config)
    if trainer.comm.rank == 0:
        np.savez(out, **state_arrays(trainer))


def case_wgangp(out):
    case_train(out, WGANGP)


def case_began(out):
    case_train(out, BEGAN)


def case_cmlp(out):
    case_train(out, CMLP)


def case_ragan(out):
    case_train(out, RAGAN)


def case_dragan(out):
    case_train(out, DRAGAN)


def case_dragan_std(out):
    """Float64: distributed.global_std of each rank's rows equals NumPy's std of the whole
    batch (rows of very different spread on the two ranks, so a per-rank std is far off)."""
    comm = distributed.default_communicator()
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(3.0, 0.5, (4, 5)), rng.normal(-1.0, 4.0, (4, 5))])
    std = distributed.global_std(comm, x[distributed.local_slice(len(x), comm)])
    assert abs(std - x.std()) <= 1e-14 * x.std(), (std, x.std())
    print(f"rank {comm.rank}: OK {std!r}")


def case_dcgan_augment(out):
    case_train(out, DCGAN_AUGMENT)


def case_wgandiv(out):
    case_train(out, WGANDIV)


def case_dcgan_nosync(out):
    case_train(out, DCGAN)


def case_dcgan_sync(out):
    case_train(out, dict(DCGAN, sync_batchnorm=True))


def case_dcgan_per_rank(out):
    """Per-rank BatchNorm: every BN layer's running statistics after one step are exactly the
    momentum updates with the batches this rank fed it (its slice: batch/N rows), and the
    weights stay identical on every rank while the statistics differ between ranks."""
    comm = distributed.default_communicator()
    trainer = Trainer(TrainConfig.from_dict(dict(DCGAN, out="unused")))
    seen = {}
    for model in (trainer.G, trainer.D):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                def forward(x, m=m, original=m.forward):
                    seen.setdefault(id(m), (m, []))[1].append(np.array(x, dtype=np.float64))
                    return original(x)
                m.forward = forward
    trainer.train_step()
    assert seen, "no BatchNorm layer ran"
    local = DCGAN["batch_size"] // comm.size
    stats = []
    for m, inputs in seen.values():
        mean, var = np.zeros(m.num_features), np.ones(m.num_features)
        for x in inputs:
            assert len(x) == local, f"a BatchNorm saw {len(x)} rows, not the rank's slice of {local}"
            n = x.size // x.shape[1]
            axes = (0, 2, 3)
            mean = (1 - m.momentum) * mean + m.momentum * x.mean(axis=axes)
            var = (1 - m.momentum) * var + m.momentum * x.var(axis=axes) * n / (n - 1)
        np.testing.assert_allclose(m.running_mean, mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(m.running_var, var, rtol=1e-4, atol=1e-6)
        stats.append(np.asarray(m.running_mean, dtype=np.float64))
    stats = np.concatenate(stats)
    other = stats.copy()
    comm.broadcast(other, root=1)  # rank 1's statistics, on both ranks
    if comm.rank == 0:
        assert not np.allclose(stats, other), "per-rank BatchNorm statistics are equal on both ranks"
    distributed.check_in_sync((trainer.G, trainer.D), comm, 1)  # raises if the weights differ
    print(f"rank {comm.rank}: OK")


def case_sync_bn_grad(out):
    """Float64: BatchNorm2d with the communicator on rank r's slice against one process's
    BatchNorm2d on the concatenated batch (outputs, dx, the summed dγ, dβ, running stats),
    and a central difference of Σ_r ⟨w_r, y_r⟩ along a random global direction u."""
    comm = distributed.default_communicator()
    rng = np.random.default_rng(7)
    n, c, h, w = 6, 3, 2, 3
    x = rng.normal(1.5, 2.0, (n * comm.size, c, h, w))
    dy = rng.normal(size=x.shape)
    u = rng.normal(size=x.shape)
    gamma, beta = rng.normal(size=c), rng.normal(size=c)
    rows = distributed.local_slice(len(x), comm)

    def layer(sync):
        bn = nn.BatchNorm2d(c, dtype=np.float64, comm=comm if sync else None, momentum=0.3)
        bn.weight.data[...] = gamma
        bn.bias.data[...] = beta
        bn.running_mean[...], bn.running_var[...] = 0.25, 2.0  # away from the defaults
        return bn

    single, synced = layer(False), layer(True)
    y_ref = single(x)
    dx_ref = single.backward(dy)
    y = synced(x[rows])
    dx = synced.backward(dy[rows])
    np.testing.assert_allclose(y, y_ref[rows], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref[rows], rtol=1e-10, atol=1e-12)
    grads = np.concatenate([synced.weight.grad, synced.bias.grad])
    comm.allreduce(grads)
    np.testing.assert_allclose(grads, np.concatenate([single.weight.grad, single.bias.grad]), rtol=1e-10)
    np.testing.assert_allclose(synced.running_mean, single.running_mean, rtol=1e-12)
    np.testing.assert_allclose(synced.running_var, single.running_var, rtol=1e-12)

    def objective(t):
        value = np.array([float((synced(x[rows] + t * u[rows]) * dy[rows]).sum())])
        return comm.allreduce(value)[0]

    eps = 1e-5
    numeric = (objective(eps) - objective(-eps)) / (2 * eps)
    analytic = comm.allreduce(np.array([float((dx * u[rows]).sum())]))[0]
    scale = comm.allreduce(np.array([float(np.abs(dx * u[rows]).sum())]))[0]
    assert abs(numeric - analytic) <= 1e-7 * scale, (numeric, analytic, scale)
    print(f"rank {comm.rank}: OK {numeric:.10g} {analytic:.10g}")


def case_raise_on_one_rank(out):
    """Rank 1 dies of an uncaught exception while rank 0 waits in an allreduce: the abort hook
    must end the job (without it rank 0 would wait forever)."""
    comm = distributed.default_communicator()
    if comm.rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    comm.allreduce(np.zeros(1))
    print("rank 0: the allreduce returned")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}
CASES.update({f"update_{name}": functools.partial(case_train, config=config) for name, config in UPDATES.items()})

if __name__ == "__main__":
    CASES[sys.argv[1]](sys.argv[2] if len(sys.argv) > 2 else None)
