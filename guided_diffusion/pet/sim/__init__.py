"""Simulated whole-body PET: phantoms, scanner and tracer presets, the projector, OSEM, dose levels and evaluation cases.

Activity is in SUV on (X, Y, Z) grids of isotropic voxels (mm), attenuation in
1/mm; everything is numpy/scipy and reproducible from integer seeds.
"""
