"""What training reads: (low dose, full dose) pairs on disk, random crops for the network, fixed validation crops.

Volumes are (X, Y, Z) in SUV on disk; crops reach the network as (1, Z, X, Y)
on the model's intensity scale (see :mod:`guided_diffusion.pet.intensity`).
"""
