"""Training, as registered pieces (one place for each concept):

    loop.py       the Trainer: step, log, sample, checkpoint, resume, stop on a signal
    evaluate.py   samples and the final evaluation (toy modes/EMD, FID/KID, SWD)
    build.py      the data, the networks (spectral norm), the optimizers, the EMA, DiffAugment
    ranks.py      every draw made for the global batch, sliced per rank
    players.py    the pieces of a step: the critic's backward on a loss, weight clipping
    checks.py     NaN/Inf in a metric or gradient stops the run (TrainingDiverged)
    resume.py     what a resumed run may change
    schemes/      the registered training schemes, each owning its whole step

Users import ``from minigan.train import Trainer, train, TrainingDiverged``. This package file
imports nothing, so the config's checks can ask the scheme registry without running the loop.
"""
