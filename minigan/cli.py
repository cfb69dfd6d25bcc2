"""The ``minigan`` command: train, sample, interpolate, export (and the experiments).

Every expected failure (bad config, unreadable data, corrupted checkpoint, a diverged run)
ends with one line on stderr and a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import argparse
import signal
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import numpy as np

from .stopping import Interrupted, exit_code, handling, raise_interrupted, signal_name

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def _flag_help(f) -> str:
    """A flag's --help line from its TrainConfig setting: what it does, allowed values, default."""
    from .config import setting_choices

    text = f.metadata["help"]
    choices = setting_choices(f)
    if choices:
        text += f"; one of {', '.join(map(str, choices))}" + (" or a folder of images" if f.metadata["open_choices"] else "")
    default = f.metadata["default_text"]
    default = default() if callable(default) else default  # read from the registries when asked
    default = default or ("unset" if f.default is None else
                          str(f.default).lower() if isinstance(f.default, bool) else f.default)
    return (text + f" (default: {default})").replace("%", "%%")


def _config_flags(parser):
    from .config import TrainConfig

    group = parser.add_argument_group("training settings (also config-file keys, with _ for -)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kinds = f.type if isinstance(f.type, str) else str(f.type)
        if kinds.startswith("bool"):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=_flag_help(f))
        else:
            base = {"int": int, "float": float}.get(kinds.split("|")[0].strip(), str)
            group.add_argument(flag, dest=f.name, type=base, default=None, help=_flag_help(f),
                               metavar=_metavar(f, base))


def _metavar(f, base) -> str:
    from .config import setting_choices

    return "NAME" if setting_choices(f) else {int: "N", float: "X"}.get(base, f.name.upper())


def build_parser():
    parser = argparse.ArgumentParser(prog="minigan", description="Train GANs with hand-derived gradients.")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train a GAN (no arguments: the digits demo)")
    train.add_argument("--config", type=Path, help="a TOML file of config keys (flags override it)")
    train.add_argument("--resume", type=Path, metavar="DIR", help="continue the run saved in DIR")
    train.add_argument("--overwrite", action="store_true",
                       help="start afresh in a used --out folder, deleting the old run's files (others stay)")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bar (or progress lines, when stderr is not a terminal) and no time estimate")
    # retired: the Numba kernels are the default now (--reference turns them off); still accepted
    train.add_argument("--fast-kernels", dest="retired_fast_kernels", action="store_true", help=argparse.SUPPRESS)
    _config_flags(train)
    sample = sub.add_parser("sample", help="write a grid of samples from a checkpoint",
                            description="Write a grid of samples drawn from a run's generator.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("checkpoint", type=Path, help="a run folder or its checkpoint.ckpt")
    sample.add_argument("-n", type=int, default=64, help="number of samples")
    sample.add_argument("--seed", type=int, default=0, help="seed of the noise z the samples are drawn from")
    _output_flags(sample, "samples.png", "the picture to write; its extension picks the format "
                  "(.png, .jpg, .webp ...)")
    interp = sub.add_parser("interpolate", help="write a latent walk between random points",
                            description="Write a grid of latent walks: each row runs along a straight line "
                            "between two random noise vectors.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    interp.add_argument("checkpoint", type=Path, help="a run folder or its checkpoint.ckpt")
    interp.add_argument("--rows", type=int, default=8, help="number of walks (rows)")
    interp.add_argument("--steps", type=int, default=10, help="points along each walk (columns), at least 2")
    interp.add_argument("--seed", type=int, default=0, help="seed of the walks' end points")
    _output_flags(interp, "interpolation.png", "the picture to write; its extension picks the format")
    export = sub.add_parser("export", help="write a run's generator (or critic) as a .safetensors file for PyTorch",
                            description="Write a run's generator (or critic) as a .safetensors file with the "
                            "keys and shapes of the equal torch.nn module.")
    export.add_argument("checkpoint", type=Path, help="a run folder or its checkpoint.ckpt")
    _output_flags(export, None, "the file to write (default: generator.safetensors, or critic.safetensors "
                  "with --critic)")
    export.add_argument("--critic", action="store_true", help="export the critic (discriminator) instead of G")
    swd = sub.add_parser("swd", help="the sliced Wasserstein distance between two sets of images, with its floor")
    swd.add_argument("first", type=Path, help="a folder of images, or a run folder (its generator's samples)")
    swd.add_argument("second", help="the real images: a folder of images or an image set (digits, mnist5k, emoji)")
    swd.add_argument("-n", type=int, default=2000, help="images compared, at most (default: 2000)")
    swd.add_argument("--size", type=int, default=None,
                     help="side in px both sets are resized to (default: SECOND's own: 64 for folders and emoji, "
                          "8 digits, 28 mnist5k; a run folder: the run's)")
    swd.add_argument("--seed", type=int, default=0,
                     help="seed of the images, patches and directions drawn (a run folder: the run's own; default: 0)")
    spectrum = sub.add_parser("spectrum", help="the game Jacobian's top eigenvalues at a run's checkpoint",
                              description="Plot the top eigenvalues of the game Jacobian J = ∂ξ/∂(θ, ψ) at a "
                              "run's checkpoint on one fixed batch, and say whether they are rotation-dominated.",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    spectrum.add_argument("checkpoint", type=Path, help="a run folder or its checkpoint.ckpt")
    spectrum.add_argument("-k", type=int, default=6, help="eigenvalues by modulus and by real part")
    spectrum.add_argument("-n", type=int, default=64, help="batch size of the fixed batch")
    spectrum.add_argument("--seed", type=int, default=0, help="seed of the fixed batch")
    _output_flags(spectrum, None, "the plot to write (default: RUN/spectrum.png)")
    experiments = _experiments()
    experiment = sub.add_parser("experiment", help="run one of the papers' classic experiments (PNG + CSV)",
                                description="Run one of the papers' classic experiments; it writes PNG "
                                "figures and CSV tables.\n\n" + _experiment_list(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    experiment.add_argument("name", help=f"one of: {', '.join(experiments)}")
    experiment.add_argument("--quick", action="store_true", help="a seconds-long version (same outputs)")
    experiment.add_argument("--out", type=Path, default=None, help="output folder (default runs/experiments/NAME)")
    experiment.add_argument("--seed", type=int, default=0, help="seed of every random stream (default 0)")
    return parser


def _output_flags(parser, default, text):
    """--out and --overwrite of a command that writes one file (see runfolder.check_output_file)."""
    parser.add_argument("--out", type=Path, default=None if default is None else Path(default), help=text)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (never a run's own files: checkpoint, metrics ...)")


def _experiments() -> dict:
    from .experiments import EXPERIMENTS

    return EXPERIMENTS


def _experiment_list() -> str:
    """The bullet list of minigan.experiments' docstring, one item per experiment, as help text."""
    from . import experiments

    doc = experiments.__doc__
    return doc[doc.index("* ``"):].split("\n\n")[0].replace("``", "")


def _run_dir(path: Path) -> Path:
    return path.parent if path.suffix == ".ckpt" else path


def _read_config_file(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config file {path} is a folder") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from None


def cmd_train(args) -> int:
    from .config import TrainConfig
    from .train import Trainer

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    if args.retired_fast_kernels:
        print("minigan: note: --fast-kernels is the default now and can be dropped (--reference turns the "
              "kernels off)", file=sys.stderr)
    values = _read_config_file(args.config) if args.config is not None else {}
    values.update(given)  # flags override the file
    if args.resume is not None:
        if args.overwrite:
            raise ValueError("--resume continues a run and --overwrite deletes one: give only one of them")
        _no_checkpoint_yet(args.resume)
        # the file's keys and the flags alike: resumable ones applied, any other change refused
        trainer = Trainer.resume(args.resume, progress=not args.no_progress, overrides=values, lock=True)
        if trainer.resume_changes:
            print(f"minigan: resuming {args.resume} at step {trainer.step} with "
                  + ", ".join(f"{k} {old} → {new}" for k, (old, new) in trainer.resume_changes.items()),
                  file=sys.stderr)
    else:
        trainer = Trainer(TrainConfig.from_dict(values), progress=not args.no_progress)
    _note_capped_threads(trainer)
    summary = trainer.train(overwrite=args.overwrite)
    stopped_by = trainer.stop_signal or signal.SIGINT  # under mpiexec: another rank's signal
    if not trainer.is_root:  # under mpiexec rank 0 reports
        return exit_code(stopped_by) if summary["interrupted"] else 0
    out = trainer.out
    print(f"minigan: step {summary['step']} — wrote {out / 'samples.png'}, {out / 'losses.png'}, "
          f"{out / 'metrics.csv'}, {out / 'checkpoint.ckpt'}")
    if "modes_captured" in summary:
        print(f"minigan: modes captured {summary['modes_captured']}/{summary['n_modes']}, high-quality "
              f"{100 * summary['high_quality_fraction']:.1f}%, EMD {summary['emd']:.4f}")
    if "fid" in summary:
        print(f"minigan: FID {summary['fid']:.2f} (real-vs-real floor {summary['floor_fid']:.2f}), "
              f"precision {summary['precision']:.2f}, recall {summary['recall']:.2f}")
    if "swd" in summary or "swd_error" in summary:
        print(_swd_line(summary))
    if summary["interrupted"]:
        how = "interrupted" if stopped_by == signal.SIGINT else f"stopped by {signal_name(stopped_by)}"
        print(f"minigan: {how} — checkpoint saved at step {summary['step']}; continue with --resume {out}",
              file=sys.stderr)
        return exit_code(stopped_by)
    return 0


def _note_capped_threads(trainer):
    from .threads import usable_cores

    asked, cores = trainer.config.threads, usable_cores()
    if asked is not None and asked > cores and trainer.is_root:
        print(f"minigan: note: --threads {asked} capped to {cores}, the cores this process may use",
              file=sys.stderr)


def _no_checkpoint_yet(run_dir: Path):
    """A folder without a checkpoint that a run holds is a run before its first checkpoint: say
    it is in use rather than that the checkpoint does not exist."""
    from .runfolder import check_not_in_use

    if not (run_dir / "checkpoint.ckpt").is_file():
        check_not_in_use(run_dir)


def _swd_line(summary: dict) -> str:
    """The sliced Wasserstein distance ×10³ (minigan.swd), its floor and its levels, in one line."""
    if "swd_error" in summary:
        return f"minigan: SWD not computed: {summary['swd_error']}"
    levels = ", ".join(f"{name} px {value:.1f}" for name, value in summary["swd_levels"].items())
    return (f"minigan: SWD×1e3 {summary['swd']:.1f} (real-vs-real floor {summary['floor_swd']:.1f}; "
            f"per level {levels}; {summary['swd_images']} images)")


def _load_trainer(path: Path):
    from .train import Trainer

    _no_checkpoint_yet(_run_dir(path))
    return Trainer.resume(_run_dir(path))


def cmd_sample(args) -> int:
    from .images import save_grid, save_points_png
    from .runfolder import check_output_file

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    check_output_file(args.out, args.overwrite)
    trainer = _load_trainer(args.checkpoint)
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.n, trainer.latent_dim)).astype(np.float32)
    labels = np.arange(args.n) % trainer.config.num_classes if trainer.conditional else None
    samples = trainer.samples(z, labels)
    if trainer.toy:
        save_points_png(samples, args.out, title=f"{args.n} samples")
    else:
        save_grid(samples, args.out)
    print(f"minigan: wrote {args.out}")
    return 0


def cmd_interpolate(args) -> int:
    from .images import save_grid
    from .runfolder import check_output_file

    if args.rows < 1 or args.steps < 2:
        raise ValueError(f"need --rows >= 1 and --steps >= 2, got {args.rows} and {args.steps}")
    check_output_file(args.out, args.overwrite)
    trainer = _load_trainer(args.checkpoint)
    if trainer.toy:
        raise ValueError("interpolate draws image grids; this checkpoint was trained on a toy 2-D set")
    rng = np.random.default_rng(args.seed)
    start, end = (rng.standard_normal((args.rows, 1, trainer.latent_dim)) for _ in range(2))
    t = np.linspace(0, 1, args.steps).reshape(1, -1, 1)
    z = ((1 - t) * start + t * end).reshape(-1, trainer.latent_dim).astype(np.float32)
    labels = np.repeat(np.arange(args.rows) % trainer.config.num_classes, args.steps) if trainer.conditional else None
    save_grid(trainer.samples(z, labels), args.out, nrow=args.steps)
    print(f"minigan: wrote {args.out}")
    return 0


def cmd_export(args) -> int:
    from .export import export_run
    from .runfolder import check_output_file

    player = "critic" if args.critic else "generator"
    out = check_output_file(args.out or Path(f"{player}.safetensors"), args.overwrite)
    _no_checkpoint_yet(_run_dir(args.checkpoint))
    export_run(_run_dir(args.checkpoint), out, player)
    print(f"minigan: wrote the {player} of {_run_dir(args.checkpoint)} to {out}")
    return 0


def cmd_swd(args) -> int:
    """SWD×10³ of FIRST's images (or a run's samples) against SECOND's, beside SECOND's own floor."""
    from .data import TOY_NAMES, load_dataset
    from .swd import swd_with_floor

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    if args.second in TOY_NAMES:
        raise ValueError(f"{args.second} is a toy 2-D set; swd compares images")
    if (args.first / "checkpoint.ckpt").is_file():
        trainer = _load_trainer(args.first)
        if trainer.toy:
            raise ValueError(f"{args.first} was trained on a toy 2-D set; swd compares images")
        real = load_dataset(args.second, size=trainer.image_shape[-1], rng=np.random.default_rng(args.seed))[0]
        result = trainer.swd_quality(real, n=args.n)
        if "swd_error" in result:
            raise ValueError(result["swd_error"])
    else:
        if not args.first.is_dir():
            raise ValueError(f"{args.first} is neither a folder of images nor a run folder")
        real = load_dataset(args.second, size=args.size, rng=np.random.default_rng(args.seed))[0]
        fake = load_dataset(str(args.first), size=real.shape[-1], rng=np.random.default_rng(args.seed))[0]
        result = swd_with_floor(real, fake, n=min(args.n, len(fake), len(real) // 2), seed=args.seed)
    print(_swd_line(result))
    return 0


def cmd_experiment(args) -> int:
    from .experiments import EXPERIMENTS, run_experiment

    if args.name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {args.name!r}; valid: {', '.join(EXPERIMENTS)}")
    result = run_experiment(args.name, out=args.out, quick=args.quick, seed=args.seed)
    print(f"minigan: experiment {args.name} took {result['seconds']:.1f} s — wrote "
          + ", ".join(str(path) for path in result["files"]))
    return 0


def cmd_spectrum(args) -> int:
    from .runfolder import check_output_file
    from .spectrum import run_spectrum

    out = check_output_file(args.out or _run_dir(args.checkpoint) / "spectrum.png", args.overwrite)
    result = run_spectrum(_load_trainer(args.checkpoint), out, k=args.k, n=args.n, seed=args.seed)
    print(f"minigan: {result['reading']}")
    print(f"minigan: wrote {out}")
    return 0


COMMANDS = {"spectrum": cmd_spectrum, "train": cmd_train, "sample": cmd_sample, "interpolate": cmd_interpolate,
            "experiment": cmd_experiment, "export": cmd_export, "swd": cmd_swd}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `minigan` alone: the default training run
        args = parser.parse_args(["train"] + list(argv or []))
    try:
        with handling(raise_interrupted, (signal.SIGTERM,)):  # SIGTERM ends a command as Ctrl-C does
            return COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:  # Interrupted says what a run saved
        print(f"minigan: {exc}" if str(exc) else "minigan: interrupted", file=sys.stderr)
        return _end_ranks(exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED)
    except (ValueError, RuntimeError, OSError) as exc:  # ConfigError, DataError, CheckpointError, TrainingDiverged ...
        print(f"minigan: error{_rank_tag()}: {exc}", file=sys.stderr)
        return _end_ranks(EXIT_ERROR)


def _rank_tag() -> str:
    from .distributed import current_communicator

    comm = current_communicator()
    return f" (rank {comm.rank} of {comm.size})" if comm is not None and comm.size > 1 else ""


def _end_ranks(code: int) -> int:
    """Under mpiexec a failure on one rank must end them all (the others would wait forever in
    the next allreduce): MPI_Abort with the exit code. One process: just the code."""
    from .distributed import current_communicator

    comm = current_communicator()
    if comm is not None and comm.size > 1:
        comm.abort(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
