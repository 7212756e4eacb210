"""Reading and writing PET volumes with their geometry: npz, NIfTI and DICOM series, SUV conversion.

Arrays are (X, Y, Z) float32 in SUV with ``Z`` axial; the affine is a 4x4
voxel -> world map in mm (RAS+). The names below are the package's file API;
the modules hold one format or one conversion each.
"""

from .discovery import VolumeList, VolumeSource, list_volumes
from .formats import read_volume, write_volume
from .paths import output_path
from .units import UnitOptions
from .volume import Volume

__all__ = [
    "UnitOptions", "Volume", "VolumeList", "VolumeSource", "list_volumes", "output_path", "read_volume", "write_volume",
]
