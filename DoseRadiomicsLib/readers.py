"""Reading the planning CT, the RT dose and the GTV contour into SimpleITK images.

CONTRACT (implemented by the readers work; other modules rely on exactly this):

- ``read_ct(path, patient=None) -> LoadedImage``: a DICOM series folder (or one DICOM file of it),
  NRRD, NIfTI (.nii/.nii.gz) or MHA/MHD. ``image`` is a 3D SimpleITK image in HU (pixel type as stored,
  rescale slope/intercept applied for DICOM). ``frame_of_reference_uid`` set for DICOM.
- ``read_dose(path, unit=None, patient=None) -> LoadedImage``: DICOM RTDOSE (DoseGridScaling applied,
  DoseUnits GY/CGY converted to Gy, GridFrameOffsetVector honoured) or NRRD/NIfTI/MHA with a
  declared ``unit`` ("Gy" or "cGy"; a NRRD may also declare it in a key; without either: InputError).
  ``image`` is float32 in Gy. ``details`` records scaling, original units, dose type, summation type.
- ``read_gtv(path, reference, name=None, label=None, patient=None) -> sitk.Image``: a UInt8 0/1 mask
  on the grid of ``reference`` (the CT): from an RTSTRUCT ROI chosen by ``name`` (contours
  rasterised), from a labelmap file (voxels == ``label``, default: any non-zero), or from a Slicer
  ``.seg.nrrd`` segment chosen by ``name``. Unknown names list the available ones in the error.
- Every failure raises :class:`~DoseRadiomicsLib.errors.InputError` naming the patient and file.
"""
