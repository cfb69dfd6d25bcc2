"""How much memory a training run will need, estimated before anything is allocated.

A run that cannot fit is refused in one line naming the setting to lower, before a folder
is created or a large array allocated — instead of a MemoryError traceback, or the kernel's
OOM killer ending the process (and everything else the machine runs) minutes later.

The estimate, in bytes of float32 (4 B a number), counts:

- parameters: P numbers per network, times 4 (the weights, their gradients and the two
  moment buffers of Adam; RMSprop and SGD keep fewer, so this bounds them too);
- activations: every layer keeps its output for the backward pass, and the backward makes
  a gradient of each as it goes: A numbers per sample and network, times 3 (output, its
  gradient, one temporary), times 6 for a critic under a gradient penalty (the penalty
  runs a forward, a backward and the double backward through it: each penalty declares its
  ``critic_memory_factor``), times the batch size; an auto-encoder critic (BEGAN) counts its
  encoder and decoder (the loss's ``critic_memory``);
  plus the largest im2col buffer of a convolution (C_in·k²·H_out·W_out per sample);
- the data set held in memory (N images × C·H·W, twice while it is resized), and
- the final evaluation: on toy data the fixed noise batch through G, and the exact EMD's
  n × n float64 cost matrix (and the assignment's working copy) for n = eval_samples.

It is an estimate, meant to tell a run that fits from one a hundred times too big, not to
predict the last megabyte; Python, NumPy and the libraries' own ~200 MB are left out.
Available memory: ``MemAvailable`` of /proc/meminfo, or the cgroup's limit minus its usage
when a container sets a smaller one (cgroup v2, then v1). With ``--device cuda`` the models'
parts (parameters, activations) are checked against the GPU's free memory instead, and the
data and the evaluation against the host's.
"""
from __future__ import annotations

import math

from .backends import backend_on, host_backend
from .config import ConfigError
from .losses import LOSSES
from .penalty import PENALTIES

FLOAT = 4  # bytes of a float32


def _mlp(in_dim, out_dim, hidden, depth, out_act=True):
    """(parameters, activations per sample) of models.mlp."""
    params = in_dim * hidden + hidden + (depth - 1) * (hidden * hidden + hidden) + hidden * out_dim + out_dim
    return params, 2 * hidden * depth + out_dim * (2 if out_act else 1)


def _dcgan_plan(image_size, base_width):
    start = 7 if image_size == 28 else 4
    doublings = max(int(math.log2(max(image_size // start, 1))), 1)
    return start, [base_width * 2 ** i for i in reversed(range(doublings))]


def _dcgan_g(latent, size, channels, base_width):
    start, widths = _dcgan_plan(size, base_width)
    params = latent * widths[0] * start ** 2 + 2 * widths[0]
    acts, s = 3 * widths[0] * start ** 2, start
    for w_in, w_out in zip(widths, widths[1:]):
        s *= 2
        params += w_in * w_out * 16 + 2 * w_out
        acts += 3 * w_out * s * s
    params += widths[-1] * channels * 16 + channels
    acts += 2 * channels * size * size
    # ConvTranspose2d's backward is a convolution: its columns are C_out·k²·H_in·W_in
    columns = max(w_out * 16 * (s_in * s_in) for w_out, s_in in
                  zip(widths[1:] + [channels], [start * 2 ** i for i in range(len(widths))]))
    return params, acts, columns


def _dcgan_d(size, channels, base_width, extra=0):
    start, widths = _dcgan_plan(size, base_width)
    params, acts, columns, c_in, s = 0, 0, 0, channels + extra, size
    for w in widths[::-1]:
        columns = max(columns, c_in * 16 * (s // 2) ** 2)
        s //= 2
        params += c_in * w * 16 + 3 * w * s * s  # (LayerNorm's γ, β are per element: the worst case)
        acts += 3 * w * s * s
        c_in = w
    params += c_in * start * start + 1
    return params, acts + 1, columns


def dataset_size(config) -> tuple[int, tuple]:
    """(number of images held in memory, shape of one) of an image data set, without loading it;
    (0, (2,)) for a toy set (drawn a batch at a time). Unknown or unreadable: (0, shape)."""
    from . import data

    c = config
    image_model = c.model in ("dcgan", "cdcgan")
    if c.data in data.TOY_NAMES:
        return 0, (2,)
    native = {"digits": (1797, 1, 8), "mnist5k": (5000, 1, 28)}
    if c.data in native:
        n, channels, side = native[c.data]
        side = c.image_size or ((28 if c.data == "mnist5k" else 32) if image_model else side)
        return n, (channels, side, side)
    side = c.image_size or (32 if image_model else 64)
    try:
        n = len(data.emoji_face_files()) if c.data == "emoji" else len(data.image_files(c.data))
    except (OSError, data.DataError):
        n = 0  # loading says what is wrong
    return n, (3, side, side)


def estimate(config) -> dict:
    """Bytes a run of the resolved ``config`` needs, by part: {"parameters", "activations",
    "data", "evaluation", "total"}."""
    c = config
    n_images, shape = dataset_size(c)
    toy = shape == (2,)
    dim = math.prod(shape)
    latent = c.latent_dim or (2 if toy else 64)
    emb = c.num_classes if c.model in ("cmlp", "cdcgan") else 0
    columns = 0
    loss = LOSSES.get(c.loss)
    if c.model in ("mlp", "cmlp"):
        pg, ag = _mlp(latent + emb, dim, c.hidden, c.depth, out_act=not toy)
        pd, ad = loss.critic_memory(c, dim, *_mlp(dim + emb, 1, c.hidden, c.depth, out_act=False))
        pg, pd = pg + emb * emb, pd + emb * emb
    elif c.model in ("dcgan", "cdcgan"):
        channels, size = shape[0], shape[-1]
        pg, ag, cg = _dcgan_g(latent + emb, size, channels, c.base_width)
        pd, ad, cd = _dcgan_d(size, channels, c.base_width, emb)
        pd, ad = loss.critic_memory(c, dim, pd, ad)  # an auto-encoder critic is bigger (BEGAN)
        columns = max(cg, cd)
    elif c.model == "cogan":  # two domains through shared MLP layers
        h = min(c.hidden, 256)
        pg, ag = latent * h + h * h + 2 * (h * dim + dim) + 2 * h, 2 * (2 * h + 2 * dim)
        pd, ad = 2 * (dim * h + h) + h * h + h + h + 1, 2 * (4 * h + 1)
    else:  # a model this estimate does not know yet: count the data and the evaluation only
        pg = ag = pd = ad = 0
    critic_factor = PENALTIES.get(c.penalty).critic_memory_factor  # 6 under a double backward, else 3
    per_sample = FLOAT * (3 * ag + critic_factor * ad + 2 * columns)
    parts = {"parameters": FLOAT * 4 * (pg + pd), "activations": c.batch_size * per_sample,
             "data": 2 * FLOAT * n_images * dim}
    evaluation = 0
    if toy:
        n_fixed = max(c.eval_samples, 500)
        evaluation = n_fixed * FLOAT * (latent + ag)
        if c.data != "swissroll":  # modes and the exact EMD: an n × n float64 cost matrix, and a copy
            evaluation += 2 * 8 * c.eval_samples ** 2
    parts["evaluation"] = evaluation
    parts["total"] = sum(parts.values())
    return parts


def available_memory() -> int | None:
    """Bytes this process may still allocate in host RAM: MemAvailable, or less under a cgroup limit."""
    return host_backend().free_memory()


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _culprit(config, part: str) -> str:
    """The setting that makes ``part`` big: the one furthest above its usual value."""
    c = config
    width = {"mlp": ("hidden", 256), "cmlp": ("hidden", 256), "cogan": ("hidden", 256)}.get(
        c.model, ("base_width", 64))
    size = ("image_size", 32) if c.image_size is not None else None
    candidates = {"activations": [("batch_size", 64), width] + ([size] if size else []),
                  "parameters": [width] + ([size] if size else []),
                  "data": [size] if size else [],
                  "evaluation": [("eval_samples", 2000)]}[part]
    if not candidates:
        return f"use a smaller data set than {c.data!r}"
    name, usual = max(candidates, key=lambda item: getattr(c, item[0]) / item[1])
    return f"lower --{name.replace('_', '-')} ({name} is {getattr(c, name)})"


def device_free_memory(device: str) -> int | None:
    """Bytes free where ``device``'s arrays live (for "cuda": the driver's free memory plus
    what CuPy's pool holds unused); None when unknown (without CuPy or a GPU the run then
    stops on the GPU path's own message)."""
    return backend_on(device).free_memory()


# Where each part of the estimate lives on a device whose arrays are not in host RAM (--device
# cuda): the models, their gradients, optimizer state and activations on the device; the data
# set and the final evaluation (the exact EMD's cost matrix) on the host.
DEVICE_PARTS = ("parameters", "activations")
HOST_PARTS_WITH_DEVICE = ("data", "evaluation")


def check_memory(config, available: int | None = None, device_free: int | None = None):
    """Refuse (ConfigError, one line) a run whose estimate exceeds the available memory: host
    RAM on the CPU; on a device with its own memory (``device="cuda"``) that memory for what
    lives there (DEVICE_PARTS) and host RAM for the rest."""
    parts = estimate(config)
    device = backend_on(config.device)
    host_parts = ("parameters", "activations", "data", "evaluation")
    if not device.host:
        device_free = device_free_memory(config.device) if device_free is None else device_free
        if device_free is not None:
            _refuse_if_over(config, parts, DEVICE_PARTS, device_free, device.memory_label, device.memory_free)
        host_parts = HOST_PARTS_WITH_DEVICE
    available = available_memory() if available is None else available
    if available is not None:
        host = host_backend()
        _refuse_if_over(config, parts, host_parts, available, host.memory_label, host.memory_free)


def _refuse_if_over(config, parts, names, available, what, have):
    total = sum(parts[k] for k in names)
    if total <= available:
        return
    biggest = max(names, key=parts.get)
    shown = ", ".join(f"{k} {human(parts[k])}" for k in names if parts[k] >= 0.01 * total)
    raise ConfigError(f"this run needs about {human(total)} of {what} ({shown}) but "
                      f"{have.format(human(available))}; {_culprit(config, biggest)}")
