"""Relaxometry from phase-cycled bSSFP (paper 001, METHODS section 3).

Submodules: ``data`` (protocol, training distributions, features), ``miracle`` (vectorised
MIRACLE), ``networks`` (SVNN/PINN MLPs and the PINN signal encoder), ``train`` (resumable training
with early stopping), ``volume`` (volume fitting, default cached models, simulated test volume),
``evaluate`` (Monte Carlo grid / in vivo-like / off-resonance evaluation) and ``demo``.
Heavy imports stay in the submodules.
"""
