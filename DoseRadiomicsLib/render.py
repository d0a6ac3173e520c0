"""``slice.png``: the chosen CT slice with the dose colour wash and the ROI outlines.

The user should see at a glance what was measured: the mediastinal-window CT, the dose over it, and
each ROI's edge. Left panel: the whole slice; right panel: a zoom on the ROIs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .rois import SliceROIs

ROI_COLOURS = ["#00ff66", "#ffd400", "#ff3b30", "#ff00ff", "#00c8ff", "#ffffff"]


def _outline_segments(mask: np.ndarray):
    """Pixel-edge segments between mask and background, in pixel coordinates."""
    m = np.pad(mask.astype(bool), 1)
    segs = []
    # vertical edges: between columns c-1 and c
    rows, cols = np.nonzero(m[:, 1:] != m[:, :-1])
    for r, c in zip(rows, cols):
        segs.append([(c - 0.5, r - 1.5), (c - 0.5, r - 0.5)])
    rows, cols = np.nonzero(m[1:, :] != m[:-1, :])
    for r, c in zip(rows, cols):
        segs.append([(c - 1.5, r - 0.5), (c - 0.5, r - 0.5)])
    return segs


#: The wash is transparent below this fraction of the maximum dose (and below WASH_MIN_GY), so the CT
#: stays readable where the dose is low; above it, opacity grows with dose up to WASH_MAX_ALPHA.
WASH_FRACTION = 0.1
WASH_MIN_GY = 2.0
WASH_MAX_ALPHA = 0.5
MEDIASTINAL_WINDOW = (40.0, 400.0)  # level, width in HU


def dose_wash(dose: np.ndarray, dmax: float, cmap_name: str = "jet") -> np.ndarray:
    """RGBA wash of a dose slice: the colour map's colour, alpha 0 below the low-dose threshold, then
    rising linearly from a third of WASH_MAX_ALPHA to WASH_MAX_ALPHA at the maximum."""
    import matplotlib

    low = max(WASH_FRACTION * dmax, WASH_MIN_GY)
    rgba = matplotlib.colormaps[cmap_name](np.clip(dose / dmax, 0, 1))
    ramp = np.clip((dose - low) / max(dmax - low, 1e-9), 0, 1)
    rgba[..., 3] = np.where(dose >= low, WASH_MAX_ALPHA * (1 / 3 + 2 / 3 * ramp), 0.0)
    return rgba


def _coincident_with(masks: dict) -> dict:
    """ROI name -> the earlier ROI whose mask is the same pixels (e.g. GTV-heat is the GTV's)."""
    out, names = {}, list(masks)
    for i, n in enumerate(names):
        for earlier in names[:i]:
            if earlier not in out and np.array_equal(masks[n], masks[earlier]):
                out[n] = earlier
                break
    return out


def _draw(ax, ct, dose, masks, spacing, window, dmax, limits=None, linewidth=1.6):
    """The CT, the wash and the outlines on one axis; returns the wash's ScalarMappable."""
    import matplotlib
    from matplotlib.collections import LineCollection

    sx, sy = spacing
    level, width = window
    ax.imshow(ct, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, aspect=sy / sx,
              interpolation="nearest")
    ax.imshow(dose_wash(dose, dmax), aspect=sy / sx, interpolation="nearest")
    same = _coincident_with(masks)
    for k, ((name, m), colour) in enumerate(zip(masks.items(), ROI_COLOURS)):
        segs = _outline_segments(m)
        if name in same:
            # the same outline as an earlier ROI: every other pixel edge in this colour, over the
            # earlier one drawn whole, so the line reads as two-coloured dashes (both visible)
            segs = [sg for sg in segs if int(round(sg[0][0] + sg[0][1] + sg[1][0] + sg[1][1])) % 4 < 2]
        ax.add_collection(LineCollection(segs, colors=colour, linewidths=linewidth,
                                         label=name + (f" (= {same[name]})" if name in same else "")))
    if limits:
        ax.set_xlim(limits[0] - 0.5, limits[1] + 0.5)
        ax.set_ylim(limits[3] + 0.5, limits[2] - 0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    return matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, dmax), cmap="jet")


def _slice_arrays(rois: SliceROIs):
    rois = rois.centre_slices() if hasattr(rois, "centre_slices") else rois   # a slab or volume: its largest slice
    ct = sitk.GetArrayFromImage(rois.ct)[0].astype(float)
    dose = sitk.GetArrayFromImage(rois.dose)[0].astype(float)
    masks = {k: sitk.GetArrayFromImage(v)[0] != 0 for k, v in rois.masks.items()}
    union = np.zeros_like(ct, dtype=bool)
    for m in masks.values():
        union |= m
    rr, cc = np.nonzero(union)
    margin = max(10, int(0.3 * max(np.ptp(rr) + 1, np.ptp(cc) + 1)))
    zoom = (max(cc.min() - margin, 0), min(cc.max() + margin, ct.shape[1] - 1),
            max(rr.min() - margin, 0), min(rr.max() + margin, ct.shape[0] - 1))
    return ct, dose, masks, zoom


def render_slice_png(rois: SliceROIs, path, title: str = "", window=MEDIASTINAL_WINDOW, dpi: int = 110) -> Path:
    """Draw :func:`slice_png_bytes` to ``path``, atomically."""
    from .fileio import atomic_write_bytes
    return atomic_write_bytes(path, slice_png_bytes(rois, title=title, window=window, dpi=dpi))


def slice_png_bytes(rois: SliceROIs, title: str = "", window=MEDIASTINAL_WINDOW, dpi: int = 110) -> bytes:
    """The CT slice (level/width ``window``, mediastinal by default), the dose wash and the ROI
    outlines as PNG bytes: the whole slice and a zoom on the ROIs, with a dose colour bar marking the
    isodose thresholds and the wash's transparent range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct, dose, masks, zoom = _slice_arrays(rois)
    spacing = rois.ct.GetSpacing()[:2]
    dmax = float(dose.max()) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), constrained_layout=True)
    for ax, limits in zip(axes, (None, zoom)):
        im = _draw(ax, ct, dose, masks, spacing, window, dmax, limits, linewidth=1.6 if limits else 1.0)
    axes[1].legend(loc="lower right", fontsize=8, framealpha=0.7)
    bar = fig.colorbar(im, ax=axes, shrink=0.8, label="dose (Gy)")
    low = max(WASH_FRACTION * dmax, WASH_MIN_GY)
    bar.ax.axhspan(0, low, color="white", alpha=0.8)
    bar.ax.text(0.5, low / 2, "no\nwash", ha="center", va="center", fontsize=7, transform=bar.ax.get_yaxis_transform())
    for t in getattr(rois, "isodose_gy", ()) or ():
        bar.ax.axhline(t, color="black", linewidth=1.2)
    s = rois.section
    areas = ", ".join(f"{k} {v:.0f} mm²" for k, v in rois.areas_mm2().items())
    fig.suptitle(f"{title}  slice {s.index} ({s.position_mm:.1f} mm)  CT W{window[1]:g}/L{window[0]:g}\n{areas}".strip(),
                 fontsize=10)
    return _png_bytes(fig, dpi)


def render_thumbnail_png(rois: SliceROIs, path, size_px: int = 200, window=MEDIASTINAL_WINDOW) -> Path:
    """The zoom panel of ``slice.png`` alone, ``size_px`` square, for the cohort's QA sheet (written
    atomically: a reader never sees half a picture).

    Drawn as pixels, not through a matplotlib figure: a worker draws one per patient, and a figure
    cost about a fifth of a synthetic patient's CPU time. The same content as the panel: the CT in
    ``window``, :func:`dose_wash` over it, each ROI's pixel edges in its colour (an ROI with the same
    pixels as an earlier one in dashes over it), the pixels' true aspect, white around."""
    import io

    from PIL import Image

    from .fileio import atomic_write_bytes

    ct, dose, masks, (c0, c1, r0, r1) = _slice_arrays(rois)
    dmax = float(dose.max()) or 1.0
    sx, sy = rois.ct.GetSpacing()[:2]
    w, h = c1 - c0 + 1, r1 - r0 + 1
    scale = size_px / max(w * sx, h * sy)
    width, height = max(1, int(round(w * sx * scale))), max(1, int(round(h * sy * scale)))
    cols = c0 + np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    rows = r0 + np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    level, span = window
    grey = np.clip((ct[np.ix_(rows, cols)] - (level - span / 2)) / span, 0.0, 1.0)
    wash = dose_wash(dose[np.ix_(rows, cols)], dmax)
    alpha = wash[..., 3:4]
    rgb = grey[..., None] * (1 - alpha) + wash[..., :3] * alpha
    same = _coincident_with(masks)
    dashes = ((np.arange(height)[:, None] // 3 + np.arange(width)[None, :] // 3) % 2) == 0
    for (name, m), colour in zip(masks.items(), ROI_COLOURS):
        inside = m[np.ix_(rows, cols)]
        edge = np.zeros_like(inside)
        for axis in (0, 1):          # a 2-pixel line on each pixel edge between the ROI and the rest
            step = np.diff(inside, axis=axis) != 0
            lead = [slice(None)] * 2
            lead[axis] = slice(None, -1)
            trail = [slice(None)] * 2
            trail[axis] = slice(1, None)
            edge[tuple(lead)] |= step
            edge[tuple(trail)] |= step
        if name in same:
            edge &= dashes
        rgb[edge] = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    picture = np.full((size_px, size_px, 3), 255, np.uint8)
    top, left = (size_px - height) // 2, (size_px - width) // 2
    picture[top:top + height, left:left + width] = np.rint(rgb * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return atomic_write_bytes(Path(path), buf.getvalue())


def _png_bytes(fig, dpi: int) -> bytes:
    """The figure as PNG bytes, the figure closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    return buf.getvalue()
