"""Placing the dose on the CT grid, and checking that it covers the GTV.

CONTRACT (implemented by the alignment work):

- ``align_dose_to_ct(ct, dose, gtv=None, transform=None, register=False, patient=None)
  -> tuple[sitk.Image, dict]``: ``ct`` and ``dose`` are ``LoadedImage``; ``gtv`` a mask on the CT grid.
  Same FrameOfReferenceUID (or, for non-DICOM, both without one and overlapping in physical space):
  resample linearly onto the CT grid, 0 outside the dose grid. Different frames: use ``transform``
  (path to an ITK .tfm/.h5, mapping CT points to dose points as ITK resampling expects) or, with
  ``register=True``, a rigid Mattes-MI registration; otherwise AlignmentError. The dict reports
  method, frames, transform parameters, registration metric, and ``gtv_dose_coverage`` (fraction of
  GTV voxels inside the dose grid; < 1 is reported, 0 raises AlignmentError).
"""
