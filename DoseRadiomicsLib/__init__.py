"""DoseRadiomics: 2D radiomics of the planning CT and 2D dosiomics of the RT dose.

The library behind the DoseRadiomics 3D Slicer module and the ``doseradiomics`` command.
It has no Qt dependency; MRML is touched only in :mod:`DoseRadiomicsLib.mrml_bridge`.
"""

__version__ = "0.1.0"
