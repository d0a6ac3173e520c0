"""The exceptions DoseRadiomics raises for bad input.

Every error a user can cause derives from :class:`DoseRadiomicsError`. Its message names the
patient, the file and the problem, and says what to do, so that a cohort run can record it
in ``failures.csv`` and a Slicer user can read it in a message box.
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
