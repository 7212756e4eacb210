"""Scanner presets: resolution, count level and clinical reconstruction of real PET/CT systems.

A preset fills the acquisition and reconstruction settings of
:func:`~guided_diffusion.pet.sim.simulation.simulate_subject` that a user leaves
unset. Without a preset the simulator keeps its own defaults (4 mm resolution,
1.65 mm voxels, OSEM 3 x 11, 5 mm filter), the settings the demo model was
trained on.

What the numbers mean in this simulator:

- ``resolution_fwhm_mm``: the NEMA NU 2 spatial resolution near the centre of
  the field of view (filtered back-projection of an 18F point source at 1 cm,
  radial, tangential and axial FWHM averaged). The simulator blurs the activity
  with a Gaussian of this FWHM; its reconstruction models no resolution, as
  OSEM without PSF modelling does.
- ``sensitivity``: counts per unit activity relative to the reference
  long-axial-field-of-view system; full-dose trues per mm of axial extent are
  ``DEFAULT_TRUES_PER_MM * sensitivity``. NEMA sensitivities (a 70 cm line
  source at the centre) exaggerate the gain of a long axial field of view for
  a whole-body scan: a body reaches past the NEMA source and the short
  scanner's bed positions overlap, so the effective whole-body gain of a
  ~1 m system over a 15-26 cm one is about 4-10x, not the 10-20x of the NEMA
  ratio. The relative sensitivities below take the reported whole-body gain of
  the Quadra over the Vision 600 (about 5x) and scale the other short systems
  by their NEMA sensitivity relative to the Vision 600. Time of flight, which
  lowers the noise of real scanners further, is not modelled (the projector
  has none).
- ``voxel_size_mm``, ``iterations``, ``subsets``, ``fwhm_mm``: a typical
  clinical whole-body reconstruction of the system (matrix over the field of
  view, OSEM updates, Gaussian post-filter). The vendors reconstruct with
  time of flight and often PSF; here the same numbers drive the simulator's
  non-TOF 2D OSEM.
"""

from __future__ import annotations

from dataclasses import dataclass

from .presets import named_preset


@dataclass(frozen=True)
class ScannerPreset:
    """One PET/CT system as the simulator sees it.

    Attributes:
        name: the key in :data:`SCANNERS` (what ``--scanner`` takes).
        description: system, axial field of view and where the numbers come from, in a line.
        resolution_fwhm_mm: system spatial resolution (NEMA-like, 18F), mm FWHM.
        voxel_size_mm: typical clinical reconstruction voxel, mm.
        sensitivity: counts per unit activity relative to the reference system (1.0).
        iterations, subsets: typical clinical OSEM settings.
        fwhm_mm: typical clinical Gaussian post-filter, mm FWHM.
    """

    name: str
    description: str
    resolution_fwhm_mm: float
    voxel_size_mm: float
    sensitivity: float
    iterations: int
    subsets: int
    fwhm_mm: float


#: The presets by name; ``quadra`` is the reference (sensitivity 1.0).
SCANNERS: dict[str, ScannerPreset] = {
    # Siemens Biograph Vision Quadra, 106 cm axial FOV, the kind of system the paper's
    # training data came from. NEMA NU 2-2018 (Prenosil et al., J Nucl Med 2022, "Performance
    # characteristics of the Biograph Vision Quadra PET/CT system with a long axial field of
    # view using the NEMA NU 2-2018 standard"): 3.3 / 3.4 / 3.8 mm radial / tangential / axial
    # FWHM; 83 cps/kBq with the clinical maximum ring difference 85 (176 with 322).
    # 440 x 440 matrix over 72 cm (1.65 mm voxels); TOF+PSF OSEM 4 iterations x 5 subsets
    # with a 2 mm Gaussian is a common clinical setting.
    "quadra": ScannerPreset(
        name="quadra",
        description="Siemens Biograph Vision Quadra, 106 cm LAFOV, the reference (Prenosil et al. 2022)",
        resolution_fwhm_mm=3.5,
        voxel_size_mm=1.65,
        sensitivity=1.0,
        iterations=4,
        subsets=5,
        fwhm_mm=2.0,
    ),
    # Siemens Biograph Vision 600, 26 cm axial FOV, the same detectors as the Quadra.
    # NEMA NU 2-2012 (van Sluis et al., J Nucl Med 2019, "Performance characteristics of the
    # digital Biograph Vision PET/CT system"): about 3.6 mm FWHM near the centre, 16.4 cps/kBq.
    # Whole-body sensitivity of the Quadra about fivefold that of the Vision 600 (Prenosil
    # et al., EJNMMI Phys 2022, "EARL compliance measurements on the Biograph Vision Quadra
    # PET/CT system with a long axial field of view"; Alberts et al., Eur J Nucl Med Mol
    # Imaging 2021, head-to-head Quadra vs Vision 600). Clinical: 220 x 220 matrix (3.3 mm),
    # TOF+PSF OSEM 4 x 5, 4 mm Gaussian.
    "vision600": ScannerPreset(
        name="vision600",
        description="Siemens Biograph Vision 600, 26 cm (van Sluis et al. 2019)",
        resolution_fwhm_mm=3.6,
        voxel_size_mm=3.3,
        sensitivity=0.2,
        iterations=4,
        subsets=5,
        fwhm_mm=4.0,
    ),
    # GE Discovery MI, 4 rings, 20 cm axial FOV. NEMA NU 2-2012 (Hsu et al., J Nucl Med 2017,
    # "Studies of a next-generation silicon-photomultiplier-based time-of-flight PET/CT system"):
    # 4.10 / 4.19 / 4.48 mm radial / tangential / axial FWHM at 1 cm, 13.7 cps/kBq
    # (0.2 x 13.7 / 16.4 = 0.17 of the Quadra). Clinical: 256 x 256 over 70 cm (2.73 mm),
    # TOF OSEM (VPFX) 3 iterations x 16 subsets, 5 mm Gaussian.
    "discovery_mi": ScannerPreset(
        name="discovery_mi",
        description="GE Discovery MI 4-ring, 20 cm (Hsu et al. 2017)",
        resolution_fwhm_mm=4.3,
        voxel_size_mm=2.73,
        sensitivity=0.17,
        iterations=3,
        subsets=16,
        fwhm_mm=5.0,
    ),
    # Siemens Biograph mCT (TrueV), 22 cm axial FOV, photomultiplier-based. NEMA NU 2
    # (Jakoby et al., Phys Med Biol 2011, "Physical and clinical performance of the mCT
    # time-of-flight PET/CT scanner"; Rausch et al., EJNMMI Phys 2015, mCT Flow): about
    # 4.3-4.4 mm FWHM at 1 cm, 9.6-9.7 cps/kBq (0.2 x 9.7 / 16.4 = 0.12 of the Quadra).
    # Clinical (EARL-type protocols): 200 x 200 over 81.5 cm (4.07 mm), TOF OSEM 2 x 21, 5 mm Gaussian.
    "mct": ScannerPreset(
        name="mct",
        description="Siemens Biograph mCT with TrueV, 22 cm (Jakoby et al. 2011)",
        resolution_fwhm_mm=4.4,
        voxel_size_mm=4.07,
        sensitivity=0.12,
        iterations=2,
        subsets=21,
        fwhm_mm=5.0,
    ),
}

#: The preset the others are relative to.
REFERENCE_SCANNER = "quadra"


def get_scanner(scanner: str | ScannerPreset) -> ScannerPreset:
    """The preset named ``scanner`` (a preset passes through).

    Raises:
        UserError: the name is not in :data:`SCANNERS`; the message lists the choices.
    """
    return named_preset(scanner, SCANNERS, "scanner")
