"""PET domain: everything about the scans, nothing about the network's internals.

Subpackages, one job each:

* :mod:`~guided_diffusion.pet.io`: reading and writing volumes with their geometry
  (npz, NIfTI, DICOM series) and conversion to SUV;
* :mod:`~guided_diffusion.pet.sim`: the simulator (phantoms, projector, OSEM,
  dose levels) and the simulated evaluation cases;
* :mod:`~guided_diffusion.pet.training`: training pairs on disk, random crops and
  the fixed validation crops (the one place that runs the diffusion sampler);
* :mod:`~guided_diffusion.pet.eval`: metrics, quality tables, lesion quantitation,
  the Gaussian baseline and figures.

Beside them, shared by several jobs: :mod:`~guided_diffusion.pet.intensity`
(SUV <-> model scale), :mod:`~guided_diffusion.pet.patches` (patch planning and
blending), :mod:`~guided_diffusion.pet.filters` (Gaussian filter given in mm) and
:mod:`~guided_diffusion.pet.ensemble` (running mean and SD of ensemble members).
Only ``training/`` uses torch; the rest is numpy/scipy (``make lint`` checks it).
"""
