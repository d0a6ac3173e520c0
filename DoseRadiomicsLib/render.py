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


def render_slice_png(rois: SliceROIs, path, title: str = "", window=(40.0, 400.0), dpi: int = 110) -> Path:
    """Draw the CT slice (level/width ``window``), the dose wash and the ROI outlines to ``path``."""
    from .fileio import atomic_write_bytes
    return atomic_write_bytes(path, slice_png_bytes(rois, title=title, window=window, dpi=dpi))


def slice_png_bytes(rois: SliceROIs, title: str = "", window=(40.0, 400.0), dpi: int = 110) -> bytes:
    """The PNG of :func:`render_slice_png`, as bytes (written by the caller, atomically)."""
    import io
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    ct = sitk.GetArrayFromImage(rois.ct)[0].astype(float)
    dose = sitk.GetArrayFromImage(rois.dose)[0].astype(float)
    masks = {k: sitk.GetArrayFromImage(v)[0] != 0 for k, v in rois.masks.items()}
    sx, sy = rois.ct.GetSpacing()[:2]
    level, width = window
    dmax = float(dose.max()) or 1.0

    union = np.zeros_like(ct, dtype=bool)
    for m in masks.values():
        union |= m
    rr, cc = np.nonzero(union)
    margin = max(10, int(0.3 * max(np.ptp(rr) + 1, np.ptp(cc) + 1)))
    zoom = (max(cc.min() - margin, 0), min(cc.max() + margin, ct.shape[1] - 1),
            max(rr.min() - margin, 0), min(rr.max() + margin, ct.shape[0] - 1))

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), constrained_layout=True)
    for ax, limits in zip(axes, (None, zoom)):
        ax.imshow(ct, cmap="gray", vmin=level - width / 2, vmax=level + width / 2,
                  aspect=sy / sx, interpolation="nearest")
        wash = np.ma.masked_less(dose, 0.1 * dmax)
        im = ax.imshow(wash, cmap="jet", alpha=0.35, vmin=0, vmax=dmax, aspect=sy / sx,
                       interpolation="nearest")
        # GTV and GTV-heat share their pixels: the GTV is drawn wider so both stay visible.
        for k, ((name, m), colour) in enumerate(zip(masks.items(), ROI_COLOURS)):
            ax.add_collection(LineCollection(_outline_segments(m), colors=colour,
                                             linewidths=3.0 if k == 0 else 1.2, label=name))
        if limits:
            ax.set_xlim(limits[0] - 0.5, limits[1] + 0.5)
            ax.set_ylim(limits[3] + 0.5, limits[2] - 0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(loc="lower right", fontsize=8, framealpha=0.6)
    fig.colorbar(im, ax=axes, shrink=0.8, label="dose (Gy)")
    s = rois.section
    areas = ", ".join(f"{k} {v:.0f} mm²" for k, v in rois.areas_mm2().items())
    fig.suptitle(f"{title}  slice {s.index} ({s.position_mm:.1f} mm)\n{areas}".strip(), fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
