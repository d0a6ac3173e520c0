"""The exceptions DoseRadiomics raises for bad input.

Every error a user can cause derives from :class:`DoseRadiomicsError`. Its message names the
patient, the file and the problem, and ``hint`` says what to do, so that a cohort run can record it
in ``failures.csv`` (columns kind = the class name, file, message), a Slicer user can read it in a
message box, and the ``doseradiomics`` command prints it on one line and exits with code 1.

Which class for which bad input (each is a case of the corpus in ``Testing/BadInputs``):

- :class:`InputError` (readers, dicomrt): a CT, dose or GTV file missing, empty, truncated or not
  an image; NaN or infinite voxels; a header declaring more than the memory limit
  (``DOSERADIOMICS_MAX_IMAGE_BYTES``, checked before allocating); several components per voxel;
  a DICOM series with a missing slice or a gantry tilt; an RTDOSE without or with a non-positive
  DoseGridScaling, in RELATIVE units or 0 Gy everywhere; a NRRD/NIfTI dose without a unit or with
  a conflicting one; an RTSTRUCT without the named ROI (the available names are listed), with only
  open contours, contours off the CT grid or across its slices, another frame of reference, or cut
  off; an empty GTV label or mask; the wrong DICOM modality for a role. Implausible inputs
  (:mod:`DoseRadiomicsLib.limits`, each limit raised by its environment variable): a dose above
  ``DOSERADIOMICS_MAX_DOSE_GY`` (200 Gy; a cGy hint), an ROI spanning more than
  ``DOSERADIOMICS_MAX_GREY_LEVELS`` grey levels, a picture above ``DOSERADIOMICS_MAX_PICTURE_PIXELS``,
  a direction matrix further than ``DOSERADIOMICS_DIRECTION_TOLERANCE`` from orthonormal; a negative
  dose inside the GTV, ``--gtv-label 0`` or one outside the mask's pixel type; in a cohort run, an
  input that is a device, FIFO or a folder of more than 10,000 files (refused before hashing).
- :class:`AlignmentError` (alignment): dose and CT in different frames of reference without a
  transform, a dose grid that misses the CT or the whole GTV, an unreadable or singular transform.
- :class:`ROIError` (crosssection, rois): an ROI empty, smaller than 4 pixels or covering the whole
  largest cross-section (e.g. no pixel reaches the isodose); isodose thresholds giving one name.
- :class:`ExtractionError` (extraction): pyradiomics failed or gave another feature set.
- :class:`ManifestError` (manifest): missing or duplicate columns, a cell of the wrong type,
  duplicate or unsafe patient ids, not UTF-8, empty, larger than 50 MB; with ``check_files``,
  missing image files (a cohort run instead records each as that patient's InputError).
- :class:`DataError` (training): the cohort cannot support the analysis: one outcome class, fewer
  events than the 10 cross-validation folds, no outcome, mixed extraction settings.
- :class:`OutputError` (fileio, every command): an output cannot be written: disk full, a
  read-only folder, ``--out`` naming a file where a folder is wanted (or under a file), a name
  too long for the filesystem. Checked before a command's long work where it can be; files are
  written atomically, so the previous file survives intact.
- :class:`ModelFileError` (modelfile, prediction, report): not JSON, nested too deeply, another
  schema, a newer schema version, a checksum mismatch, NaN or infinite numbers, inconsistent
  models, larger than 20 MB, extraction settings that differ from the features', or lacking the
  sections a report needs.

Unusual but valid inputs are supported, not refused: oblique, sagittal or coronal CTs (the cross-
section is normal to an image axis), one-slice CTs, RTDOSE in cGy, self-intersecting contours
(even-odd fill), paths with spaces and non-ASCII characters.
"""

from __future__ import annotations


class DoseRadiomicsError(Exception):
    """Base class: ``problem`` plus optional ``patient``, ``path``, ``hint`` (what to do)."""

    def __init__(self, problem: str, *, patient: str | None = None, path=None, hint: str | None = None):
        self.problem = problem
        self.patient = patient
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = []
        if self.patient is not None:
            where.append(f"patient {self.patient}")
        if self.path is not None:
            where.append(f"file {self.path}")
        text = (", ".join(where) + ": " if where else "") + self.problem
        if self.hint:
            text += f" ({self.hint})"
        return text

    def with_context(self, *, patient: str | None = None, path=None) -> "DoseRadiomicsError":
        """Fill in the patient or file if the raiser did not know them; returns self."""
        if patient is not None and self.patient is None:
            self.patient = patient
        if path is not None and self.path is None:
            self.path = str(path)
        self.args = (self._compose(),)
        return self

    @property
    def kind(self) -> str:
        return type(self).__name__


class InputError(DoseRadiomicsError):
    """An input image, dose or contour file is missing, unreadable or inconsistent."""


class AlignmentError(DoseRadiomicsError):
    """The dose cannot be placed on the CT grid (no overlap, different frames, bad transform)."""


class ROIError(DoseRadiomicsError):
    """A region of interest is empty, too small, or cannot be built."""


class ExtractionError(DoseRadiomicsError):
    """pyradiomics failed or yielded a different feature set than configured."""


class ManifestError(DoseRadiomicsError):
    """A cohort manifest is invalid; ``row`` and ``column`` say where."""

    def __init__(self, problem: str, *, row: int | None = None, column: str | None = None, **kwargs):
        self.row = row
        self.column = column
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        if where:
            problem = " ".join(where) + ": " + problem
        super().__init__(problem, **kwargs)


class DataError(DoseRadiomicsError):
    """The cohort's data cannot support the requested analysis (one class, too few events...)."""


class ModelFileError(DoseRadiomicsError):
    """A model file is invalid, from an unknown schema version, or does not match the features."""


class OutputError(DoseRadiomicsError):
    """An output file or folder cannot be written (disk full, read-only, a file in the way...)."""
