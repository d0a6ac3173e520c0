"""Render the Extensions Index screenshots from the module Logic's outputs, headless.

These are NOT captures of a Slicer window (none is available headless): they are matplotlib renderings
of the MRML nodes the DoseRadiomics Logic creates on the bundled case (slicer-core's real MRML), i.e.
the CT slice of the largest cross-section, the aligned dose as a colour wash in the module's dose
colour table, and the ROI segments. Run from the repository root:

    .venv/bin/python DoseRadiomics/Resources/Screenshots/make_screenshots.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(REPO), str(REPO / "DoseRadiomics"), str(REPO / "Testing" / "Slicer")]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402


def main() -> int:
    import conftest  # the headless MRML session the tests use
    conftest._make_slicer_session()
    import slicer
    import DoseRadiomics
    from DoseRadiomicsLib import mrml_bridge
    import SimpleITK as sitk

    logic = DoseRadiomics.DoseRadiomicsLogic()
    case = logic.loadSampleCase()
    aligned = logic.alignDose(case["ct"], case["dose"], case["gtvSegmentation"], case["gtvSegmentId"])
    section = logic.findLargestCrossSection(case["gtvSegmentation"], case["gtvSegmentId"], case["ct"])
    rois = logic.makeDoseROIs(case["ct"], aligned, case["gtvSegmentation"], case["gtvSegmentId"])
    k = section["index"]
    ct = slicer.util.arrayFromVolume(case["ct"])[k]
    dose = slicer.util.arrayFromVolume(aligned)[k]
    masks = {name: sitk.GetArrayFromImage(mrml_bridge.mask_from_segment(rois, name, case["ct"]))[k]
             for name in ("GTV", "GTV-heat", "50Gy-heat")}
    table = logic.doseColorTable()
    rgba = np.array([table.GetLookupTable().GetTableValue(i) for i in range(table.GetNumberOfColors())])
    cmap = ListedColormap(rgba[:, :3])
    sx, sy = case["ct"].GetSpacing()[:2]
    extent = [0, ct.shape[1] * sx, ct.shape[0] * sy, 0]
    areas = logic.roiAreas(rois, case["ct"])
    rows, cols = np.nonzero(ct > -500)  # the body, with a margin: what a user would zoom to
    xlim = ((cols.min() - 8) * sx, (cols.max() + 8) * sx)
    ylim = ((rows.max() + 8) * sy, (rows.min() - 8) * sy)
    note = "rendered headless from the DoseRadiomics Logic's MRML nodes (OpenKBP pt_10)"

    fig, ax = plt.subplots(figsize=(6.4, 6.0), dpi=100)
    ax.imshow(ct, cmap="gray", vmin=-160, vmax=240, extent=extent)
    shown = np.ma.masked_less(dose, 0.05 * float(slicer.util.arrayFromVolume(aligned).max()))
    im = ax.imshow(shown, cmap=cmap, alpha=0.5, vmin=0, vmax=float(dose.max()), extent=extent)
    ax.contour(masks["GTV"], levels=[0.5], colors=["#00ffff"], linewidths=1.5, extent=[0, extent[1], 0, extent[2]],
               origin="upper")
    fig.colorbar(im, ax=ax, fraction=0.046, label="dose (Gy)")
    ax.set_title(f"Dose on CT, largest GTV cross-section (slice {k}, {section['area_mm2']:.0f} mm²)", fontsize=10)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("mm")
    fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
    fig.savefig(HERE / "DoseRadiomics-DoseWash.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    for ax, (name, base, kw) in zip(axes, [("GTV", ct, dict(cmap="gray", vmin=-160, vmax=240)),
                                           ("GTV-heat", dose, dict(cmap=cmap, vmin=0, vmax=float(dose.max()))),
                                           ("50Gy-heat", dose, dict(cmap=cmap, vmin=0, vmax=float(dose.max())))]):
        ax.imshow(base, extent=extent, **kw)
        ax.contour(masks[name], levels=[0.5], colors=["white" if name != "GTV" else "#ff3030"], linewidths=1.5,
                   extent=[0, extent[1], 0, extent[2]], origin="upper")
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_title(f"{name}: {areas[name]:.0f} mm²", fontsize=10)
        ax.set_axis_off()
    fig.suptitle("The three ROIs on the largest cross-section (segments of the ROI segmentation)", fontsize=11)
    fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
    fig.savefig(HERE / "DoseRadiomics-ROIs.png")
    plt.close(fig)
    print("wrote", HERE / "DoseRadiomics-DoseWash.png", HERE / "DoseRadiomics-ROIs.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
