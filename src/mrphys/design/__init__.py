"""Learning the acquisition: SPIN, joint pulse-sequence and reconstruction optimisation.

``data`` (Bloch-simulated training data), ``train`` (reconstruction network, on the one trainer
:class:`mrphys.train.Trainer`), ``optimize`` (finite-difference and exact-gradient sequence
optimisation, typed histories) and ``run`` (end-to-end runs for the CLI). The networks live in
:mod:`mrphys.nets`, the figures in :mod:`mrphys.plot`, the demo in :mod:`mrphys.demo.spin`;
``design`` imports nothing from ``recon`` or ``relax``.
"""
