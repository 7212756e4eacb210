"""Reading and writing PET volumes with their geometry: npz, NIfTI and DICOM series, SUV conversion.

Arrays are (X, Y, Z) float32 in SUV with ``Z`` axial; the affine is a 4x4
voxel -> world map in mm (RAS+). The names below are the package's file API;
the modules hold one format or one conversion each. Formats are looked up in
:data:`.registry.FORMATS`; the built-in ones are registered here, and
``FORMATS.md`` says how to add another.
"""

from .dicom import DICOM_FORMAT
from .discovery import VolumeList, list_volumes
from .formats import read_volume, survey_volume, write_volume
from .nifti import NIFTI_FORMAT
from .npz import NPZ_FORMAT
from .paths import output_path
from .registry import FORMATS, VolumeFormat, register_format
from .source import ReadOptions, VolumeInfo, VolumeSource
from .units import UnitOptions
from .volume import Volume

register_format(NPZ_FORMAT)
register_format(NIFTI_FORMAT)
register_format(DICOM_FORMAT)

__all__ = [
    "FORMATS", "ReadOptions", "UnitOptions", "Volume", "VolumeFormat", "VolumeInfo", "VolumeList", "VolumeSource",
    "list_volumes", "output_path", "read_volume", "register_format", "survey_volume", "write_volume",
]
