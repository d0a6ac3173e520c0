"""Draws the module icon (128x128) and the Sample Data thumbnail; run from anywhere:

    python DoseRadiomics/Resources/Icons/make_icons.py

The icon: a dose colour wash (concentric isodose bands) over a grey slice, the GTV outline in cyan and
the largest cross-section line. Drawn with matplotlib so that no image is copied from anywhere.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def draw(path: Path, size_px: int, label: str | None = None) -> None:
    n = 256
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    body = (x / 0.95) ** 2 + (y / 0.8) ** 2 <= 1
    ct = np.where(body, 0.45 + 0.08 * np.cos(6 * x) * np.sin(5 * y), 0.0)
    dose = np.exp(-(((x - 0.1) / 0.45) ** 2 + ((y + 0.05) / 0.35) ** 2)) * body
    fig = plt.figure(figsize=(1, 1), dpi=size_px)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(ct, cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
    wash = np.ma.masked_less(dose, 0.15)
    ax.imshow(wash, cmap="jet", alpha=0.6, vmin=0, vmax=1, interpolation="bilinear")
    ax.contour(dose, levels=[0.5, 0.8], colors=["#ffd000", "#ff3000"], linewidths=size_px / 128)
    gtv = ((x - 0.12) / 0.22) ** 2 + ((y + 0.02) / 0.17) ** 2 <= 1
    ax.contour(gtv.astype(float), levels=[0.5], colors=["#00ffff"], linewidths=2.5 * size_px / 128)
    ax.axhline(n * 0.49, color="white", lw=1.2 * size_px / 128, ls="--")
    if label:
        ax.text(n / 2, n * 0.95, label, color="white", ha="center", va="bottom", fontsize=9)
    ax.set_axis_off()
    fig.savefig(path, dpi=size_px, transparent=False)
    plt.close(fig)


if __name__ == "__main__":
    draw(HERE / "DoseRadiomics.png", 128)
    draw(HERE / "DoseRadiomicsSample.png", 256, label="CT + dose + GTV")
