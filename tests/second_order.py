"""Second-order (double backward) finite-difference checks for the tests of issue 15.

For a module that computed dx = backward(g) = J(x, θ)ᵀg after forward(x), the function
F(x, g, θ) = ⟨c, J(x, θ)ᵀg⟩ has the gradients double_backward(c) provides:
∂F/∂g = J·c (its first output), ∂F/∂θ (added into the parameters' .grad) and ∂F/∂x
(its second output, None meaning zero). All three are compared with central differences.
"""
import numpy as np

from minigan.gradcheck import check_gradients


def second_order_report(module, x, g, c, rng, forward=None, fd_mode=None, check_input=True):
    """``forward(x)`` runs the module (default ``module(x)``); ``fd_mode`` ("eval" or None) is
    the mode the finite differences run in (for layers whose training forward changes state
    the step treats as constant, such as spectral norm's power iteration)."""
    forward = module if forward is None else forward
    forward(x)
    module.zero_grad()
    module.backward(g, accumulate=False, create_graph=True)
    jc, s = module.double_backward(c)
    assert jc.shape == g.shape
    arrays, grads = {"g": g}, {"g": jc}
    if check_input:
        arrays["x"], grads["x"] = x, (np.zeros_like(x) if s is None else s)
    for name, p in module.named_parameters():
        arrays[name], grads[name] = p.data, p.grad.copy()
    if fd_mode == "eval":
        module.eval()

    def f():
        forward(x)
        return float(np.sum(c * module.backward(g, accumulate=False)))

    return check_gradients(f, arrays, grads, rng=rng)
