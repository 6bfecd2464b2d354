"""Learning the acquisition: SPIN, joint pulse-sequence and reconstruction optimisation.

``data`` (Bloch-simulated training data), ``train`` (reconstruction network), ``optimize``
(finite-difference and exact-gradient sequence optimisation), ``figures``, ``run`` (end-to-end
runs for the CLI) and ``demo``.
"""
