"""Dose-map pictures: reading them, and turning their colour wash (or grey levels) back into dose.

The paper's dose input was a picture exported from the planning system: a colour wash of the dose
alpha-blended over the grey CT, often with a colour bar beside it. This module works in the
picture's own pixels (column x, row y, origin top left); :mod:`DoseRadiomicsLib.dosemap` registers
the picture to the CT slice.

The blend model. A wash pixel is ``p = a * c(d) + (1 - a) * g * (1, 1, 1)`` in sRGB (0..1): ``c(d)``
the colour the table gives dose ``d``, ``a`` the wash opacity (one value for the whole picture, as
planning systems draw it; estimated from the picture unless given), ``g`` the grey of the CT under
it. With ``a`` fixed, the grey axis drops out after projecting onto the plane normal to (1, 1, 1):
``P p = a * P c(d)``, so the dose is the nearest table colour in that plane (exact least squares in
``g``), and ``g`` follows. Blending is linear in the stored sRGB values, which is why the fit is done
there and not in a perceptual space. The per-pixel residual (in 8-bit levels) is reported; pixels
that fit no table colour (annotations, contour lines in other colours) are left out of the wash.

Colour tables (Resources/ColourTables; a .json/.csv path works too): ``jet`` (dark blue, blue, cyan,
green, yellow, red, dark red; matplotlib's breakpoints) and ``rainbow`` (blue, cyan, green, yellow,
orange, red in equal steps). Position 0..1 along a table is spread linearly over the dose range.
JSON: ``{"name", "description", "stops": [{"position", "rgb"}]}``; CSV: ``position,r,g,b`` rows;
channels 0..1 or 0..255; positions rising from 0 to 1; colours linear in sRGB between stops. When the
picture has its own colour bar, prefer it: it is the planning system's exact table and range.

Limits (measured in Testing/Python/test_dosemap.py): colours the table repeats (jet's flat blue
between 11 % and 12.5 % of the range) give that band's middle dose; a contour line drawn in a table
colour is read as dose; an opaque wash (``a`` = 1) hides the CT, so only the outside of the wash
serves registration.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

COLOUR_TABLES_DIR = Path(__file__).resolve().parent.parent / "Resources" / "ColourTables"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Chroma (max - min of R, G, B, 0..1) below which a pixel is grey: CT, not wash.
MIN_CHROMA = 0.08
#: Largest blend-model residual (0..1 RGB distance) of a wash pixel; worse fits are not wash.
MAX_RESIDUAL = 0.06
#: Table colours after densifying a table or bar (dose step = range / (n - 1)).
TABLE_SAMPLES = 4096
MIN_WASH_PIXELS = 20
_GREY = np.ones(3) / np.sqrt(3.0)


@dataclass
class DoseMapPicture:
    """A dose-map picture: ``rgb`` float (rows, columns, 3) in 0..1 (grey pictures repeated over the
    three channels), where it came from, and reader details (format, size, bit depth)."""

    rgb: np.ndarray
    path: str
    details: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return self.rgb.shape[:2]

    def luminance(self) -> np.ndarray:
        """Rec. 601 luma, 0..1: what a grey conversion of the picture (as in the paper) gives."""
        return self.rgb @ np.array([0.299, 0.587, 0.114])


@dataclass
class ColourTable:
    """Colour -> dose lookup: ``colours`` (n, 3) sRGB 0..1 and the ``doses`` (n,) in Gy they mean."""

    name: str
    colours: np.ndarray
    doses: np.ndarray
    source: dict = field(default_factory=dict)

    def densified(self, n: int = TABLE_SAMPLES) -> "ColourTable":
        """The table resampled to ``n`` entries, linear in RGB between its entries (dose-ordered)."""
        order = np.argsort(self.doses, kind="stable")
        d, c = self.doses[order], self.colours[order]
        grid = np.linspace(d[0], d[-1], n)
        cols = np.stack([np.interp(grid, d, c[:, k]) for k in range(3)], axis=1)
        return ColourTable(self.name, cols, grid, dict(self.source))


@dataclass
class DecodedDoseMap:
    """The dose read from a picture, in picture pixels.

    ``dose`` (Gy, NaN outside the wash), ``wash`` (bool: pixels that show a dose), ``grey``
    (the CT-like grey under the wash and elsewhere, 0..1, for registration), ``report`` (mode,
    opacity, residuals, counts), ``excluded`` (bool: pixels to keep out of registration, e.g. the bar).
    """

    dose: np.ndarray
    wash: np.ndarray
    grey: np.ndarray
    excluded: np.ndarray
    report: dict


# ----------------------------------------------------------------------------- reading pictures

def read_dose_map_picture(path, patient=None) -> DoseMapPicture:
    """Read a dose-map picture: PNG or JPEG (RGB, RGBA, grey, palette, 16-bit grey) or a DICOM
    secondary capture (RGB, YBR, MONOCHROME1/2). Transparency is composited over black, as a
    screen shows it. Raises InputError naming the file and the problem."""
    p = Path(path).expanduser() if path is not None else None
    if p is None or not str(path).strip():
        raise InputError("no dose-map picture given", patient=patient)
    if not p.is_file():
        raise InputError("the dose-map picture does not exist" if not p.exists() else
                         "the dose-map picture must be a file, not a folder", patient=patient, path=p)
    if p.stat().st_size == 0:
        raise InputError("the dose-map picture is empty", patient=patient, path=p)
    if p.suffix.lower() in PICTURE_SUFFIXES:
        rgb, details = _read_raster(p, patient)
    else:
        from .dicomrt import is_dicom_file
        if not is_dicom_file(p):
            raise InputError("unknown dose-map picture type", patient=patient, path=p,
                             hint="give a .png, .jpg/.jpeg or a DICOM secondary capture")
        rgb, details = _read_dicom_picture(p, patient)
    if min(rgb.shape[:2]) < 16:
        raise InputError(f"the dose-map picture is only {rgb.shape[1]}x{rgb.shape[0]} pixels", patient=patient,
                         path=p, hint="export the dose map at screen resolution")
    details.update({"columns": int(rgb.shape[1]), "rows": int(rgb.shape[0])})
    return DoseMapPicture(np.ascontiguousarray(rgb, dtype=np.float64), str(p), details)


def _read_raster(p: Path, patient):
    from PIL import Image, UnidentifiedImageError

    from .limits import MAX_PICTURE_PIXELS, limit
    top = int(limit(MAX_PICTURE_PIXELS))
    # PIL's decompression-bomb check, from the header before decoding, set to refuse above our
    # limit (it raises above twice MAX_IMAGE_PIXELS; its warning below that is not ours to print)
    Image.MAX_IMAGE_PIXELS = max(1, top // 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(p)
    except Image.DecompressionBombError as exc:
        raise InputError(f"the dose-map picture has more pixels than the limit of {top:,} ({exc})",
                         patient=patient, path=p, hint=f"a screen capture has a few million; if the picture "
                                                       f"is genuine, raise {MAX_PICTURE_PIXELS[0]}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"the dose-map picture cannot be read ({exc})", patient=patient, path=p) from None
    try:
        with opened as im:
            im.load()
            mode, fmt = im.mode, im.format
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                full = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
                grey = np.clip(arr / full, 0, 1)
                return np.repeat(grey[..., None], 3, axis=2), {"format": fmt, "mode": mode, "bits": 16}
            if mode in ("P", "PA", "LA", "RGBA", "La"):
                im = im.convert("RGBA")
            elif mode != "RGB":
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"the dose-map picture cannot be read ({exc})", patient=patient, path=p) from None
    if arr.shape[2] == 4:
        arr = arr[..., :3] * arr[..., 3:4]  # over black, as a screen shows it
    return arr, {"format": fmt, "mode": mode, "bits": 8}


def _read_dicom_picture(p: Path, patient):
    import pydicom

    from .limits import check_picture_pixels

    try:
        ds = pydicom.dcmread(str(p))
        stored = str(getattr(ds, "PhotometricInterpretation", "")).upper()
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for broken or unsupported files
        raise InputError(f"the DICOM dose-map picture cannot be read ({exc})", patient=patient, path=p) from None
    # from the header, before the decoder allocates Rows x Columns x frames (a compressed file is small)
    check_picture_pixels(rows, columns, frames, patient=patient, path=p)
    if frames > 1:
        raise InputError(f"the DICOM dose-map picture has {frames} frames; one picture is needed",
                         patient=patient, path=p, hint="export the one slice of the largest lesion")
    try:
        arr, photometric = _dicom_pixels(ds, stored)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for broken or unsupported files
        raise InputError(f"the DICOM dose-map picture cannot be read ({exc})", patient=patient, path=p) from None
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    full = float(2 ** bits - 1)
    if photometric == "RGB":
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise InputError(f"the DICOM picture says RGB but its pixels have shape {arr.shape}",
                             patient=patient, path=p)
        rgb = arr.astype(np.float64) / full
    elif photometric in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim != 2:
            raise InputError(f"the grey DICOM picture has pixel shape {arr.shape}", patient=patient, path=p)
        grey = arr.astype(np.float64) / full
        if photometric == "MONOCHROME1":
            grey = 1.0 - grey
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        raise InputError(f"unsupported PhotometricInterpretation '{photometric}'", patient=patient, path=p,
                         hint="RGB, YBR_FULL(_422), MONOCHROME1 or MONOCHROME2 are read")
    details = {"format": "DICOM", "photometric_interpretation": stored, "bits": bits,
               "sop_class_uid": str(getattr(ds, "SOPClassUID", "")),
               "modality": str(getattr(ds, "Modality", ""))}
    return np.clip(rgb, 0, 1), details


# YBR colour spaces: YBR_FULL(_422) are converted by pydicom 3 itself (or by us under pydicom 2);
# YBR_ICT/YBR_RCT (JPEG 2000) come out of every JPEG 2000 decoder as RGB already.
_YBR_CONVERTIBLE = ("YBR_FULL", "YBR_FULL_422")
_YBR_DECODED_AS_RGB = ("YBR_ICT", "YBR_RCT")


def _dicom_pixels(ds, photometric: str):
    """``(pixels, the photometric interpretation they are in)``: YBR converted to RGB exactly once.

    pydicom >= 3 (it has ``pydicom.pixels``) converts YBR_FULL and YBR_FULL_422 to RGB inside
    ``pixel_array`` when its ``as_rgb`` option is on (the default; set here so a changed default
    cannot make us skip or repeat it). pydicom 2.x returns the stored YCbCr (its Pillow handler even
    asks Pillow not to convert JPEG), so the conversion is ours, with pydicom 2's own function.
    """
    try:
        import pydicom.pixels  # noqa: F401 - pydicom >= 3
        modern = hasattr(ds, "pixel_array_options")
    except ImportError:
        modern = False
    if modern:
        ds.pixel_array_options(as_rgb=True)
        arr = ds.pixel_array
        if photometric in _YBR_CONVERTIBLE + _YBR_DECODED_AS_RGB:
            photometric = "RGB"
        return arr, photometric
    arr = ds.pixel_array
    if photometric in _YBR_CONVERTIBLE:
        from pydicom.pixel_data_handlers.util import convert_color_space  # pydicom 2.x
        return convert_color_space(arr, photometric, "RGB"), "RGB"
    if photometric in _YBR_DECODED_AS_RGB:
        return arr, "RGB"
    return arr, photometric


# ----------------------------------------------------------------------------- colour tables

def available_colour_tables() -> list:
    """Names of the bundled colour tables (Resources/ColourTables)."""
    return sorted(q.stem for q in COLOUR_TABLES_DIR.glob("*") if q.suffix in (".json", ".csv"))


def load_colour_table(name_or_path, dose_range) -> ColourTable:
    """A bundled table by name (``"jet"``, ``"rainbow"``) or a .json/.csv file, spread over
    ``dose_range`` = (lowest, highest) Gy: table position 0 is the lowest dose, 1 the highest.

    JSON: ``{"name", "stops": [{"position": 0..1, "rgb": [r, g, b]}, ...]}`` with 0..1 or 0..255
    channels. CSV: ``position,r,g,b`` rows (``#`` comments allowed).
    """
    lo, hi = _dose_range(dose_range, ordered=True)
    p = Path(str(name_or_path)).expanduser()
    if not p.is_file():
        matches = [COLOUR_TABLES_DIR / f"{name_or_path}{ext}" for ext in (".json", ".csv")]
        matches = [m for m in matches if m.is_file()]
        if not matches:
            raise InputError(f"unknown colour table '{name_or_path}'",
                             hint=f"bundled tables: {', '.join(available_colour_tables())}; "
                                  "or give a .json/.csv file")
        p = matches[0]
    try:
        text = p.read_text(encoding="utf-8-sig")     # a spreadsheet's BOM would hide the first stop
        if p.suffix.lower() == ".json":
            doc = json.loads(text)
            positions = [float(s["position"]) for s in doc["stops"]]
            colours = [[float(v) for v in s["rgb"]] for s in doc["stops"]]
            name = str(doc.get("name", p.stem))
        else:
            rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].lstrip().startswith("#")]
            if rows and not _is_number(rows[0][0]):
                rows = rows[1:]
            positions = [float(r[0]) for r in rows]
            colours = [[float(v) for v in r[1:4]] for r in rows]
            name = p.stem
    except UnicodeDecodeError as exc:
        raise InputError(f"the colour table is not UTF-8 text (byte {exc.start})", path=p,
                         hint="save it as UTF-8 ('CSV UTF-8' in a spreadsheet)") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"the colour table cannot be read ({exc!r})", path=p,
                         hint="JSON with stops [{position, rgb}] or CSV position,r,g,b") from None
    pos, col = np.asarray(positions, float), np.asarray(colours, float)
    if len(pos) < 2 or col.shape != (len(pos), 3) or np.any(np.diff(pos) < 0) \
            or pos[0] != 0.0 or pos[-1] != 1.0:
        raise InputError("a colour table needs two or more stops with positions rising from 0 to 1 and "
                         "three channels each", path=p)
    if col.max() > 1.0:
        col = col / 255.0
    return ColourTable(name, col, lo + pos * (hi - lo),
                       {"kind": "table", "name": name, "file": str(p), "dose_range_gy": [lo, hi]})


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _dose_range(dose_range, ordered: bool):
    try:
        lo, hi = (float(v) for v in dose_range)
    except (TypeError, ValueError):
        raise InputError(f"a dose range is two numbers in Gy, got {dose_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi or (ordered and lo > hi):
        raise InputError(f"the dose range must be two different doses"
                         f"{', lowest first' if ordered else ''}, got {lo:g} {hi:g} Gy")
    return lo, hi


def check_box(box, picture: DoseMapPicture, what: str = "colour bar box", patient=None) -> tuple:
    """``box`` = (x0, y0, x1, y1) picture pixels, inclusive, any corner order; InputError if it
    leaves the picture. Returns it ordered."""
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"the {what} is four pixel numbers X0 Y0 X1 Y1, got {box!r}", patient=patient) from None
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    rows, cols = picture.shape
    if x0 < 0 or y0 < 0 or x1 >= cols or y1 >= rows:
        raise InputError(f"the {what} ({x0},{y0})-({x1},{y1}) lies outside the picture, which is "
                         f"{cols} x {rows} pixels (x 0..{cols - 1}, y 0..{rows - 1})",
                         patient=patient, path=picture.path,
                         hint="give the bar's corners in picture pixels, x to the right, y down from the top left")
    return x0, y0, x1, y1


def colour_table_from_bar(picture: DoseMapPicture, box, dose_range, orientation: str = "vertical",
                          patient=None) -> ColourTable:
    """The colour -> dose table of the picture's own colour bar.

    ``box`` = (x0, y0, x1, y1) the bar's pixels (inclusive); ``dose_range`` = (dose at the bottom of
    a vertical bar or the left end of a horizontal one, dose at the other end): the usual bar, high
    doses on top, is ``(min, max)``. Each step along the bar is the median colour across its
    middle half (robust to tick marks and frame lines).
    """
    if orientation not in ("vertical", "horizontal"):
        raise InputError(f"bar orientation must be 'vertical' or 'horizontal', got '{orientation}'", patient=patient)
    low, high = _dose_range(dose_range, ordered=False)
    x0, y0, x1, y1 = check_box(box, picture, patient=patient)
    bar = picture.rgb[y0:y1 + 1, x0:x1 + 1]
    if orientation == "horizontal":
        bar = bar.transpose(1, 0, 2)           # rows now run along the bar, left end first
    else:
        bar = bar[::-1]                        # bottom end first
    length, width = bar.shape[:2]
    if length < 8 or width < 1:
        raise InputError(f"the colour bar box is {length} pixels long; at least 8 are needed",
                         patient=patient, path=picture.path, hint="check the box and --bar-orientation")
    a, b = width // 4, max(width - width // 4, width // 4 + 1)
    colours = np.median(bar[:, a:b], axis=1)
    chroma = colours.max(axis=1) - colours.min(axis=1)
    if np.median(chroma) < MIN_CHROMA:
        raise InputError(f"the colour bar box ({x0},{y0})-({x1},{y1}) holds grey, not colours "
                         f"(median chroma {np.median(chroma):.3f})", patient=patient, path=picture.path,
                         hint="mark the coloured bar itself, without its labels")
    doses = np.linspace(low, high, length)
    return ColourTable("colour bar", colours, doses,
                       {"kind": "colour bar", "box": [x0, y0, x1, y1], "orientation": orientation,
                        "dose_range_gy": [low, high], "samples": int(length)})


# ----------------------------------------------------------------------------- decoding

def _project(rgb: np.ndarray) -> np.ndarray:
    """Coordinates in the plane normal to the grey axis (2D): the part of a colour no grey changes."""
    u = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)
    v = np.array([1.0, 1.0, -2.0]) / np.sqrt(6.0)
    return np.stack([rgb @ u, rgb @ v], axis=-1)


def _fit(pixels: np.ndarray, table: ColourTable, opacity: float):
    """Best table entry, CT grey and residual of each pixel (n, 3) for a fixed opacity."""
    from scipy.spatial import cKDTree

    c = table.colours
    if opacity >= 0.999:   # opaque wash: the pixel is the table colour itself
        dist, k = cKDTree(c).query(pixels)
        return k, np.full(len(pixels), np.nan), dist
    _, k = cKDTree(opacity * _project(c)).query(_project(pixels))
    grey = (pixels.mean(axis=1) - opacity * c[k].mean(axis=1)) / (1.0 - opacity)
    grey = np.clip(grey, 0.0, 1.0)
    model = opacity * c[k] + (1.0 - opacity) * grey[:, None]
    return k, grey, np.linalg.norm(pixels - model, axis=1)


def estimate_opacity(pixels: np.ndarray, table: ColourTable, seed: int = 20250301) -> tuple:
    """The wash opacity that best explains the coloured pixels (median residual), searched from
    0.1 to 1 on a 0.05 grid, then on a 0.01 grid around the best. Returns (opacity, median residual)."""
    rng = np.random.default_rng(seed)
    sample = pixels[rng.choice(len(pixels), size=min(len(pixels), 4000), replace=False)]
    scores = {}

    def best_of(grid):
        for a in np.round(grid, 2):
            if 0.1 <= a <= 1.0 and a not in scores:
                scores[a] = float(np.median(_fit(sample, table, a)[2]))
        return min(scores, key=scores.get)

    coarse = best_of(np.arange(0.10, 1.0001, 0.05))
    best = best_of(np.arange(coarse - 0.04, coarse + 0.0401, 0.01))
    return float(best), scores[best]


def _excluded_mask(shape, boxes) -> np.ndarray:
    out = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes or ():
        out[y0:y1 + 1, x0:x1 + 1] = True
    return out


def decode_colour_wash(picture: DoseMapPicture, table: ColourTable, opacity: float | None = None,
                       exclude_boxes=(), min_chroma: float = MIN_CHROMA, max_residual: float = MAX_RESIDUAL,
                       patient=None) -> DecodedDoseMap:
    """Dose (Gy) of every wash pixel by the blend model (module docstring).

    ``opacity`` of the wash: estimated when None. ``exclude_boxes``: picture boxes that are not
    image (the colour bar). Wash = chroma >= ``min_chroma`` and residual <= ``max_residual``;
    other pixels are "below the lowest isodose" (NaN). Raises InputError when the picture shows
    no wash. The report gives opacity, residual statistics in 8-bit levels, and pixel counts.
    """
    rgb = picture.rgb
    excluded = _excluded_mask(picture.shape, exclude_boxes)
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    candidate = (chroma >= min_chroma) & ~excluded
    n_cand = int(candidate.sum())
    if n_cand < MIN_WASH_PIXELS:
        raise InputError(f"the picture shows no colour wash: {n_cand} coloured pixel(s) outside the colour "
                         f"bar (chroma >= {min_chroma})", patient=patient, path=picture.path,
                         hint="export the dose as a colour wash, or use the intensity mode for a grey dose map")
    table = table.densified()
    pixels = rgb[candidate]
    if opacity is None:
        opacity, _ = estimate_opacity(pixels, table)
        opacity_source = "estimated"
    else:
        if not 0.0 < float(opacity) <= 1.0:
            raise InputError(f"the wash opacity must be in (0, 1], got {opacity}", patient=patient)
        opacity, opacity_source = float(opacity), "given"
    k, grey_under, residual = _fit(pixels, table, opacity)
    good = residual <= max_residual
    if int(good.sum()) < MIN_WASH_PIXELS:
        raise InputError(f"the picture's colours do not match the colour table '{table.name}': median "
                         f"residual {255 * np.median(residual):.1f} of 255 levels at opacity {opacity:.2f}",
                         patient=patient, path=picture.path,
                         hint="check the table or the colour bar box, or give --opacity")
    dose = np.full(picture.shape, np.nan)
    wash = np.zeros(picture.shape, bool)
    idx = np.flatnonzero(candidate)[good]
    dose.flat[idx] = table.doses[k[good]]
    wash.flat[idx] = True
    grey = picture.luminance()
    under = grey_under[good]
    grey.flat[idx[np.isfinite(under)]] = under[np.isfinite(under)]
    r = residual[good] * 255.0
    report = {
        "mode": "colour", "table": table.source, "opacity": opacity, "opacity_source": opacity_source,
        "min_chroma": min_chroma, "max_residual_levels": 255.0 * max_residual,
        "wash_pixels": int(good.sum()), "coloured_pixels_rejected": int((~good).sum()),
        "residual_levels": {"rms": float(np.sqrt(np.mean(r ** 2))), "median": float(np.median(r)),
                            "p95": float(np.percentile(r, 95)), "max": float(r.max())},
        "dose_step_gy": float(abs(table.doses[1] - table.doses[0])),
        "wash_dose_range_gy": [float(np.nanmin(dose)), float(np.nanmax(dose))],
    }
    return DecodedDoseMap(dose, wash, grey, excluded, report)


def decode_intensity(picture: DoseMapPicture, dose_range, exclude_boxes=(), patient=None) -> DecodedDoseMap:
    """The picture's grey levels as the dose map (the paper's route): luma 0 -> lowest dose of
    ``dose_range``, full scale -> highest, linear. Every pixel outside ``exclude_boxes`` counts."""
    lo, hi = _dose_range(dose_range, ordered=True)
    grey = picture.luminance()
    excluded = _excluded_mask(picture.shape, exclude_boxes)
    dose = lo + (hi - lo) * grey
    dose[excluded] = np.nan
    report = {"mode": "intensity", "dose_range_gy": [lo, hi], "bits": picture.details.get("bits"),
              "dose_step_gy": (hi - lo) / (2 ** int(picture.details.get("bits") or 8) - 1),
              "wash_pixels": int((~excluded).sum())}
    return DecodedDoseMap(dose, ~excluded, grey, excluded, report)
