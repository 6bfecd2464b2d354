"""Networks with no physics inside: AUTOMAP, the FFT + U-Net, the multi-resolution hash encoding
and the box-bounded MLP of the relaxometry methods.

Applications (``recon``, ``relax``, ``design``) build their models from these; ``nets`` imports
nothing from an application.
"""
