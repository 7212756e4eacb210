"""Tracer presets: organ uptake, lesion uptake, count level and positron range.

A tracer gives every tissue of the phantom an SUV range (a subject's value is
drawn uniformly in it, log-uniformly where the range spans more than a factor
3) and its lesions one range. The ranges are of typical organ SUVmean in
normal adults, wide enough for the spread between patients and studies; the
sources are named beside each tracer.

Two numbers change the acquisition, not the phantom:

- ``counts_factor``: full-dose counts relative to FDG for the same scanner and
  scan time. A whole body holds the injected activity whatever the tracer
  does with it, so the factor is the injected activity per kg times the
  positron fraction times the decay before the scan, relative to FDG. For the
  68Ga tracers below: about 2 MBq/kg against 3.5 MBq/kg of FDG (EANM
  procedure guidelines), a positron fraction of 0.89 against 0.97, and 60 min
  of uptake with a 68 min against a 110 min half-life (0.54 against 0.69 left)
  make 0.57 x 0.92 x 0.79 = 0.41, rounded to 0.4.
- ``positron_range_fwhm_mm``: an extra Gaussian blur added in quadrature to the
  scanner's resolution. 68Ga positrons travel a mean 3.5 mm in water against
  0.6 mm for 18F (Conti and Eriksson, EJNMMI Phys 2016, "Physics of pure and
  non-pure positron emitters for PET: a review and a discussion"); their
  cusp-shaped blur has a narrow peak and long tails, so a Gaussian stand-in is
  an approximation. 2 mm widens a 3.5-4.5 mm system resolution by 0.4-0.5 mm,
  the order of the loss measured in phantoms with 68Ga instead of 18F.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .presets import named_preset


@dataclass(frozen=True)
class TracerPreset:
    """One tracer as the phantom and the acquisition see it.

    Attributes:
        name: the key in :data:`TRACERS` (what ``--tracer`` takes).
        isotope: the positron emitter, e.g. ``"F-18"``.
        description: the compound and where its numbers come from, in a line.
        suv_ranges: organ name -> (low, high) SUV for every tissue label but air.
        lesion_suv: (low, high) SUV of lesions.
        counts_factor: full-dose counts relative to FDG.
        positron_range_fwhm_mm: extra Gaussian blur (FWHM, mm) added in quadrature to the resolution.
    """

    name: str
    isotope: str
    description: str
    suv_ranges: dict[str, tuple[float, float]] = field(hash=False)
    lesion_suv: tuple[float, float]
    counts_factor: float = 1.0
    positron_range_fwhm_mm: float = 0.0


#: 68Ga: see the module docstring for both numbers.
GA68_COUNTS_FACTOR = 0.4
GA68_POSITRON_RANGE_FWHM_MM = 2.0

# Typical SUVmean of normal adult organs for each tracer. The organs the phantom has had
# since its first version (fat ... bladder) keep their FDG ranges exactly, so that FDG
# phantoms of existing seeds do not change.
TRACERS: dict[str, TracerPreset] = {
    # FDG: liver and blood pool as in PERCIST (Wahl et al., J Nucl Med 2009); other organs
    # e.g. Zincirkeser et al., J Int Med Res 2007 ("Standardized uptake values of normal organs
    # on 18F-FDG PET and CT imaging"); head and neck glands from Nakamoto et al., Radiology 2005
    # ("Normal FDG distribution patterns in the head and neck: PET/CT evaluation"); normal
    # adrenals below the liver (an adrenal-to-liver ratio below 1 is the usual benign sign);
    # normal lymph nodes near blood pool.
    "fdg": TracerPreset(
        name="fdg",
        isotope="F-18",
        description="[18F]FDG (glucose metabolism): brain, myocardium, kidneys and urine high, liver above blood pool",
        suv_ranges={
            "fat": (0.25, 0.4),
            "muscle": (0.7, 1.0),
            "bone": (0.5, 0.9),
            "bone_marrow": (1.5, 2.5),
            "brain": (7.0, 10.0),
            "lungs": (0.5, 0.7),
            "myocardium": (2.0, 12.0),
            "blood_pool": (1.5, 2.0),
            "liver": (2.0, 2.5),
            "spleen": (1.7, 2.1),
            "kidneys": (4.0, 10.0),
            "bladder": (15.0, 40.0),
            "salivary_glands": (1.5, 2.5),
            "lacrimal_glands": (1.2, 2.2),
            "pituitary": (1.5, 3.0),
            "adrenals": (1.0, 2.0),
            "lymph_nodes": (0.8, 1.6),
        },
        lesion_suv=(3.0, 20.0),
    ),
    # [68Ga]Ga-PSMA-11: kidneys, salivary and lacrimal glands highest, then liver and spleen;
    # low brain, muscle and fat; urinary excretion (Prasad et al., Mol Imaging Biol 2016,
    # "Biodistribution of [68Ga]PSMA-HBED-CC in patients with prostate cancer: characterization
    # of uptake in normal organs and tumour lesions"; Demirci et al., Nucl Med Commun 2016,
    # "Normal distribution pattern and physiological variants of 68Ga-PSMA-11 PET/CT imaging").
    # The lymph nodes stand for PSMA-avid nodal metastases (SUV ~4-15); lesions of prostate
    # cancer span SUV ~4-40.
    "psma": TracerPreset(
        name="psma",
        isotope="Ga-68",
        description="[68Ga]Ga-PSMA-11 (prostate cancer): kidneys, salivary and lacrimal glands, avid lymph nodes",
        suv_ranges={
            "fat": (0.1, 0.3),
            "muscle": (0.4, 0.8),
            "bone": (0.3, 0.7),
            "bone_marrow": (0.8, 1.8),
            "brain": (0.05, 0.2),
            "lungs": (0.2, 0.5),
            "myocardium": (1.0, 2.5),
            "blood_pool": (1.0, 2.0),
            "liver": (3.5, 6.0),
            "spleen": (4.0, 9.0),
            "kidneys": (25.0, 45.0),
            "bladder": (10.0, 60.0),
            "salivary_glands": (8.0, 16.0),
            "lacrimal_glands": (4.0, 9.0),
            "pituitary": (0.5, 1.5),
            "adrenals": (1.5, 3.5),
            "lymph_nodes": (4.0, 15.0),
        },
        lesion_suv=(4.0, 40.0),
        counts_factor=GA68_COUNTS_FACTOR,
        positron_range_fwhm_mm=GA68_POSITRON_RANGE_FWHM_MM,
    ),
    # [68Ga]Ga-DOTATATE, somatostatin receptors: spleen highest, then kidneys, adrenals, liver
    # and pituitary; low marrow, brain and lymph nodes (Boy et al., Eur J Nucl Med Mol Imaging
    # 2011, "68Ga-DOTATOC PET/CT and somatostatin receptor (sst1-sst5) expression in normal
    # human tissue: correlation of sst2 mRNA and SUVmax"; Hofman et al., RadioGraphics 2015,
    # "Somatostatin receptor imaging with 68Ga DOTATATE PET/CT: clinical utility, normal
    # patterns, pearls, and pitfalls in interpretation"). Neuroendocrine tumours SUV ~8-60.
    "dotatate": TracerPreset(
        name="dotatate",
        isotope="Ga-68",
        description="[68Ga]Ga-DOTATATE (neuroendocrine tumours): spleen, kidneys, adrenals, liver, pituitary",
        suv_ranges={
            "fat": (0.1, 0.3),
            "muscle": (0.4, 0.9),
            "bone": (0.3, 0.8),
            "bone_marrow": (0.6, 1.5),
            "brain": (0.05, 0.2),
            "lungs": (0.2, 0.6),
            "myocardium": (0.8, 2.0),
            "blood_pool": (0.8, 2.0),
            "liver": (5.0, 9.0),
            "spleen": (15.0, 30.0),
            "kidneys": (9.0, 18.0),
            "bladder": (5.0, 40.0),
            "salivary_glands": (1.5, 4.0),
            "lacrimal_glands": (0.8, 2.0),
            "pituitary": (4.0, 10.0),
            "adrenals": (6.0, 14.0),
            "lymph_nodes": (0.6, 1.5),
        },
        lesion_suv=(8.0, 60.0),
        counts_factor=GA68_COUNTS_FACTOR,
        positron_range_fwhm_mm=GA68_POSITRON_RANGE_FWHM_MM,
    ),
    # [68Ga]Ga-FAPI-46, fibroblast activation protein: low background everywhere (liver and
    # spleen near blood pool, brain very low), urinary excretion, high uptake in most
    # carcinomas (Meyer et al., J Nucl Med 2020, "Radiation dosimetry and biodistribution of
    # 68Ga-FAPI-46 PET imaging in cancer patients"; Kratochwil et al., J Nucl Med 2019,
    # "68Ga-FAPI PET/CT: tracer uptake in 28 different kinds of cancer": tumour SUVmax ~6-25).
    "fapi": TracerPreset(
        name="fapi",
        isotope="Ga-68",
        description="[68Ga]Ga-FAPI-46 (cancer-associated fibroblasts): low background, hot tumours",
        suv_ranges={
            "fat": (0.2, 0.5),
            "muscle": (0.8, 1.5),
            "bone": (0.5, 1.0),
            "bone_marrow": (0.6, 1.2),
            "brain": (0.05, 0.2),
            "lungs": (0.3, 0.7),
            "myocardium": (1.0, 2.0),
            "blood_pool": (1.0, 2.0),
            "liver": (0.8, 1.5),
            "spleen": (0.8, 1.5),
            "kidneys": (1.5, 4.0),
            "bladder": (10.0, 40.0),
            "salivary_glands": (1.5, 3.0),
            "lacrimal_glands": (1.0, 2.5),
            "pituitary": (0.5, 1.5),
            "adrenals": (1.0, 2.0),
            "lymph_nodes": (0.8, 1.5),
        },
        lesion_suv=(6.0, 25.0),
        counts_factor=GA68_COUNTS_FACTOR,
        positron_range_fwhm_mm=GA68_POSITRON_RANGE_FWHM_MM,
    ),
}


def get_tracer(tracer: str | TracerPreset) -> TracerPreset:
    """The preset named ``tracer`` (a preset passes through).

    Raises:
        UserError: the name is not in :data:`TRACERS`; the message lists the choices.
    """
    return named_preset(tracer, TRACERS, "tracer")
