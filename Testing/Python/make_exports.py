"""Planning-system-style DICOM RT exports built from a real OpenKBP patient, in the variations of issue 11.

The CT (int16 HU), the PTV70 mask (the GTV stand-in) and the dose of one OpenKBP patient are cropped
in z around the target and written twice: as plain NRRD files (the reference route) and as a DICOM
export (one file per CT slice, an RTSTRUCT, an RTDOSE on its own, smaller grid), written with pydicom
here, not with the readers under test. The dose is quantised to the RTDOSE's integers first, and
the NRRD dose holds the same quantised values, so both routes see the same numbers.

Contours are written along pixel edges (one rectangle per run of pixels in a row, on the same
plane, so the even-odd fill gives back exactly the mask under any rule for centres on the edge).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from make_rt_fixtures import save_dicom_file  # pydicom 3 and 2.x (Slicer <= 5.10)

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RTDOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RTPLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
Z_RANGE = (48, 88)          # slices of pt_10 kept (PTV70 spans 53-82)
DOSE_SCALING = 1.234567e-3  # Gy per stored integer; not a divisor of the 0.5 Gy bin width, so no
#                             value sits on a bin edge where a last-bit rounding difference (BEAM sums) flips the bin


def _file(path: Path, sop_class: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def load_patient(folder, z_range=Z_RANGE) -> dict:
    """CT (int16), PTV70 mask (uint8) and quantised dose (float64 Gy) of an OpenKBP patient, (z, y, x)."""
    folder = Path(folder)
    read = lambda n: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / n)))  # noqa: E731
    z0, z1 = z_range
    ct = read("ct.nrrd")[z0:z1].astype(np.int16)
    gtv = (read("mask_PTV70.nrrd")[z0:z1] != 0).astype(np.uint8)
    dose = read("dose.nrrd")[z0:z1].astype(np.float64)
    spacing = sitk.ReadImage(str(folder / "ct.nrrd")).GetSpacing()
    stored = np.round(dose / DOSE_SCALING).astype(np.uint32)
    return {"ct": ct, "gtv": gtv, "stored_dose": stored, "dose": stored * DOSE_SCALING,
            "spacing": tuple(float(s) for s in spacing), "z0": z0 * float(spacing[2])}


def dose_box(p: dict, margin: int = 4):
    """(z, y, x) slices of the RTDOSE's own grid: the dose > 1 Gy bounding box plus a margin."""
    nz = np.nonzero(p["dose"] > 1.0)
    return tuple(slice(max(int(a.min()) - margin, 0), min(int(a.max()) + margin + 1, n))
                 for a, n in zip(nz, p["dose"].shape))


def write_nrrd_route(p: dict, folder) -> dict:
    """The same patient as NRRD: CT, dose (Gy, its own grid) and GTV, identity direction."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def write(arr, name, origin=(0.0, 0.0, p["z0"])):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(p["spacing"])
        img.SetOrigin(origin)
        sitk.WriteImage(img, str(folder / name))
        return folder / name

    box = dose_box(p)
    sx, sy, sz = p["spacing"]
    origin = (box[2].start * sx, box[1].start * sy, p["z0"] + box[0].start * sz)
    return {"ct": write(p["ct"], "ct.nrrd"), "gtv": write(p["gtv"], "gtv.nrrd"),
            "dose": write(p["dose"][box].astype(np.float32), "dose.nrrd", origin)}


def edge_contours(mask2d: np.ndarray):
    """Closed polygons in pixel-index coordinates (i, j) along pixel edges: one per run in a row."""
    out = []
    for j in range(mask2d.shape[0]):
        row = np.concatenate([[0], mask2d[j].astype(np.int8), [0]])
        starts = np.flatnonzero(np.diff(row) == 1)
        ends = np.flatnonzero(np.diff(row) == -1) - 1
        for a, b in zip(starts, ends):
            out.append(np.array([[a - 0.5, j - 0.5], [b + 0.5, j - 0.5], [b + 0.5, j + 0.5], [a - 0.5, j + 0.5]]))
    return out


class Export:
    """One patient's DICOM export; ``write`` puts it in a folder. Every attribute is a variation knob."""

    #: ImageOrientationPatient (row, column directions) as planning CTs store each patient position
    POSITIONS = {"HFS": ((1, 0, 0), (0, 1, 0)), "HFP": ((-1, 0, 0), (0, -1, 0)),
                 "FFS": ((-1, 0, 0), (0, 1, 0)), "FFP": ((1, 0, 0), (0, -1, 0))}

    def __init__(self, p: dict, patient_id="OKBP10", roi_names=("PTV70", "BODY"), cgy=False,
                 absolute_offsets=False, z_positions=None, summation="PLAN", position="HFS"):
        self.p = p
        self.position = position
        self.patient_id = patient_id
        self.roi_names = roi_names
        self.cgy = cgy
        self.absolute_offsets = absolute_offsets
        self.summation = summation
        nz = p["ct"].shape[0]
        self.z = np.asarray(z_positions if z_positions is not None else p["z0"] + np.arange(nz) * p["spacing"][2],
                            float)
        self.study, self.frame = generate_uid(), generate_uid()
        self.ct_series, self.plan_uid = generate_uid(), generate_uid()

    # -- the parts
    def _common(self, ds, modality, series_uid, description):
        ds.Modality = modality
        ds.PatientID = self.patient_id
        ds.PatientName = "Test^Patient"
        ds.StudyInstanceUID = self.study
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = description
        ds.StudyDate = ds.SeriesDate = "20250101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.StudyID, ds.AccessionNumber, ds.SeriesNumber = "1", "", 1
        ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "", "O", ""
        ds.ReferringPhysicianName, ds.Manufacturer = "", "DoseRadiomics test"
        ds.StudyDescription = "RT planning"
        return ds

    def write_ct(self, folder, ct_files=None) -> list:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sx, sy, _ = self.p["spacing"]
        ny, nx = self.p["ct"].shape[1:]
        row, col = self.POSITIONS[self.position]
        # the same anatomy at the same patient coordinates: pixel (0, 0) sits at the corner the
        # row and column directions start from, and the pixels are mirrored to match
        x0 = (nx - 1) * sx if row[0] < 0 else 0.0
        y0 = (ny - 1) * sy if col[1] < 0 else 0.0
        paths = []
        for k in range(self.p["ct"].shape[0]):
            path = folder / f"CT.{self.ct_series}.{k + 1}.dcm"
            ds = self._common(_file(path, CT_STORAGE), "CT", self.ct_series, "Planning CT")
            ds.FrameOfReferenceUID = self.frame
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.InstanceNumber = k + 1
            ds.PatientPosition = self.position
            ds.ImagePositionPatient = [x0, y0, float(self.z[k])]
            ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
            ds.PixelSpacing = [sy, sx]
            ds.SliceThickness = float(np.median(np.diff(self.z))) if len(self.z) > 1 else self.p["spacing"][2]
            ds.Rows, ds.Columns = ny, nx
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = 0.0, 1.0
            pixels = self.p["ct"][k][:: -1 if col[1] < 0 else 1, :: -1 if row[0] < 0 else 1]
            ds.PixelData = np.ascontiguousarray(pixels).astype("<i2").tobytes()
            save_dicom_file(ds, path)
            paths.append(path)
        return paths

    def write_scout(self, path) -> Path:
        """A LOCALIZER image (a coronal topogram) as scanners export it beside the CT."""
        path = Path(path)
        ds = self._common(_file(path, CT_STORAGE), "CT", generate_uid(), "Topogram 0.6 T20s")
        ds.FrameOfReferenceUID = self.frame
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImagePositionPatient = [0.0, 0.0, 0.0]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.Rows, ds.Columns = 64, 64
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.zeros((64, 64), "<i2").tobytes()
        save_dicom_file(ds, path)
        return path

    def write_rtstruct(self, path, masks=None, label="RS plan", frame=None) -> Path:
        """``masks``: ROI name -> (z, y, x) mask; default the GTV under the first name and a box 'BODY'."""
        path = Path(path)
        if masks is None:
            body = np.zeros_like(self.p["gtv"])
            body[:, 8:-8, 8:-8] = 1
            masks = {self.roi_names[0]: self.p["gtv"]}
            for extra in self.roi_names[1:]:
                masks[extra] = body
        sx, sy, _ = self.p["spacing"]
        ds = self._common(_file(path, RTSTRUCT_STORAGE), "RTSTRUCT", generate_uid(), "Structures")
        ds.StructureSetLabel = label
        ds.StructureSetDate = "20250102"
        fr = Dataset()
        fr.FrameOfReferenceUID = frame or self.frame
        st = Dataset()
        st.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        st.ReferencedSOPInstanceUID = self.study
        se = Dataset()
        se.SeriesInstanceUID = self.ct_series
        st.RTReferencedSeriesSequence = Sequence([se])
        fr.RTReferencedStudySequence = Sequence([st])
        ds.ReferencedFrameOfReferenceSequence = Sequence([fr])
        rois, contours, observations = [], [], []
        for number, (name, mask) in enumerate(masks.items(), start=1):
            r = Dataset()
            r.ROINumber, r.ROIName = number, name
            r.ReferencedFrameOfReferenceUID = frame or self.frame
            r.ROIGenerationAlgorithm = "MANUAL"
            rois.append(r)
            rc = Dataset()
            rc.ReferencedROINumber = number
            rc.ROIDisplayColor = [255, 0, 0]
            seq = []
            for k in range(mask.shape[0]):
                for poly in edge_contours(mask[k]):
                    c = Dataset()
                    c.ContourGeometricType = "CLOSED_PLANAR"
                    pts = np.column_stack([poly[:, 0] * sx, poly[:, 1] * sy, np.full(len(poly), self.z[k])])
                    c.NumberOfContourPoints = len(pts)
                    c.ContourData = [round(float(v), 4) for v in pts.ravel()]
                    seq.append(c)
            rc.ContourSequence = Sequence(seq)
            contours.append(rc)
            o = Dataset()
            o.ObservationNumber, o.ReferencedROINumber, o.RTROIInterpretedType = number, number, "GTV"
            o.ROIInterpreter = ""
            observations.append(o)
        ds.StructureSetROISequence = Sequence(rois)
        ds.ROIContourSequence = Sequence(contours)
        ds.RTROIObservationsSequence = Sequence(observations)
        save_dicom_file(ds, path)
        return path

    def write_rtdose(self, path, stored=None, summation=None, frame=None, patient_id=None, plan_uid=None) -> Path:
        """The dose on its own grid (the > 1 Gy box); ``stored`` replaces the stored integers (same box)."""
        path = Path(path)
        box = dose_box(self.p)
        values = self.p["stored_dose"][box] if stored is None else stored
        sx, sy, _ = self.p["spacing"]
        ds = self._common(_file(path, RTDOSE_STORAGE), "RTDOSE", generate_uid(), "Dose")
        if patient_id:
            ds.PatientID = patient_id
        ds.FrameOfReferenceUID = frame or self.frame
        ds.ContentDate = "20250103"
        ds.DoseUnits = "CGY" if self.cgy else "GY"
        ds.DoseType = "PHYSICAL"
        ds.DoseSummationType = summation or self.summation
        ds.DoseGridScaling = DOSE_SCALING * (100.0 if self.cgy else 1.0)
        ref = Dataset()
        ref.ReferencedSOPClassUID = RTPLAN_STORAGE
        ref.ReferencedSOPInstanceUID = plan_uid or self.plan_uid
        ds.ReferencedRTPlanSequence = Sequence([ref])
        zs = self.z[box[0]]
        ds.ImagePositionPatient = [box[2].start * sx, box[1].start * sy, float(zs[0])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [sy, sx]
        offsets = (zs if self.absolute_offsets else zs - zs[0]).tolist()
        ds.GridFrameOffsetVector = [float(v) for v in offsets]
        ds.NumberOfFrames = values.shape[0]
        ds.Rows, ds.Columns = values.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
        ds.FrameIncrementPointer = 0x3004000C
        ds.PixelData = values.astype("<u4").tobytes()
        save_dicom_file(ds, path)
        return path

    def write_rtplan(self, path) -> Path:
        path = Path(path)
        ds = self._common(_file(path, RTPLAN_STORAGE), "RTPLAN", generate_uid(), "Plan")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = self.plan_uid
        ds.FrameOfReferenceUID = self.frame
        ds.RTPlanLabel = "H&N 70Gy"
        save_dicom_file(ds, path)
        return path

    def write(self, folder, layout="eclipse") -> Path:
        """A whole export: 'eclipse' puts every file in one folder (CT.*, RS.*, RD.*, RP.*, a scout);
        'nested' puts the CT in a subfolder with the scout and the RT files beside it."""
        folder = Path(folder)
        if layout == "nested":
            self.write_ct(folder / "study" / "CT")
            self.write_scout(folder / "study" / "CT" / "scout.dcm")
            rt = folder / "study" / "RT"
        else:
            self.write_ct(folder)
            self.write_scout(folder / "CT.scout.dcm")
            rt = folder
        rt.mkdir(parents=True, exist_ok=True)
        self.write_rtstruct(rt / "RS.plan.dcm")
        self.write_rtdose(rt / "RD.plan.dcm")
        self.write_rtplan(rt / "RP.plan.dcm")
        (folder / "README.txt").write_text("export notes, not DICOM\n")
        return folder


def beam_split(p: dict, n: int = 3) -> list:
    """The box's stored dose split into ``n`` integer BEAM doses that sum exactly to the plan's."""
    total = p["stored_dose"][dose_box(p)].astype(np.int64)
    parts = [total // n for _ in range(n - 1)]
    parts.append(total - sum(parts))
    return [x.astype(np.uint32) for x in parts]


def copy_dataset(src, dst, **changes) -> Path:
    ds = pydicom.dcmread(src)
    ds = copy.deepcopy(ds)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    save_dicom_file(ds, dst)
    return Path(dst)
