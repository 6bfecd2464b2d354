"""Relaxometry from phase-cycled bSSFP (paper 001, METHODS section 3).

Submodules: ``data`` (protocol, training distributions, features, the method lists, the
relaxometry noise; the general protocol), ``miracle`` (vectorised MIRACLE), ``planet``
(PLANET, the ellipse fit), ``uncertainty`` (residual, quality and Cramer-Rao uncertainty maps,
least-squares refinement), ``protocol_design`` (protocols learned by Cramer-Rao bound or jointly
with a network), ``networks`` (the paper's SVNN/PINN networks
built on :class:`mrphys.nets.mlp.RelaxNet`, and the PINN signal encoder), ``train`` (training on
the one trainer :class:`mrphys.train.Trainer`), ``volume`` (volume fitting into
:class:`~mrphys.relax.volume.RelaxMaps`, default cached models, simulated test volume),
``inputs`` (pc-bSSFP NIfTI series from their parts or one file per cycle, the protocol in ms
and from BIDS sidecars, writing maps), ``bids`` (the BIDS-App: series found in a BIDS dataset,
maps written as BIDS derivatives), ``report`` (its per-subject HTML report) and
``evaluate`` (Monte Carlo grid / in vivo-like / off-resonance evaluation). The demo is
:mod:`mrphys.demo.relax`, the figures are in :mod:`mrphys.plot`. Heavy imports stay in the
submodules.
"""
