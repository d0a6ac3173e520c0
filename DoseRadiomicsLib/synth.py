"""A synthetic NSCLC radiochemotherapy cohort whose ground truth is known.

``doseradiomics synth --n 220 --seed 7 --out DIR`` writes, for every patient, a small chest-CT-like
volume with a lung tumour (``ct.nrrd``, int16 HU), a planned dose on a coarser dose grid
(``dose.nrrd``, float32 Gy) and the GTV (``gtv.nrrd``, uint8), plus ``manifest.csv`` (the cohort
manifest with clinical variables, outcome and survival), ``ground_truth.csv`` (each patient's true
probability of resistance and the latent factors behind it) and ``README.md`` (this generator's
model, with the numbers used).

Why it exists: nothing public has outcomes, so the cohort pipeline's ability to recover a signal can
only be shown where the signal is known. The outcome depends on things the paper's three ROIs can see
on the largest cross-section: GTV texture heterogeneity (CT), an underdosed "cold spot" inside the
target (dose), haemoglobin and T stage (clinical; odds ratios taken from the paper). The oracle AUC
(``roc_auc_score(outcome, true_p)``) is the ceiling any model can reach on the cohort.

Determinism: each patient draws from its own random stream, seeded by ``(seed, patient index)``, so
the same seed gives byte-identical files, and the first k patients of a cohort of n are the k
patients of a cohort of k. Clinical variables, latent factors and outcomes never depend on the
images, so ``images=False`` gives the same manifest and ground truth in milliseconds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.special import erf, expit

from .errors import InputError, OutputError
from .fileio import atomic_output_path, atomic_write_files, check_output_folder, ensure_folder

# --- geometry -------------------------------------------------------------------------------------
CT_SHAPE_XYZ = (96, 96, 20)          # voxels; a crop of the chest around the tumour
CT_SPACING = (1.5, 1.5, 3.0)         # mm
DOSE_BLOCK = 2                       # dose grid = CT grid averaged over 2x2 in-plane blocks (3 mm)
CT_NOISE_HU = 12.0                   # quantum noise after its mild spatial correlation

# --- clinical marginals (Zhang et al. 2025, Table 1, training cohort) ------------------------------
AGE_MEAN, AGE_SD = 60.3, 9.4
P_MALE = 0.81
KPS_VALUES, KPS_P = (70, 80, 90, 100), (0.15, 0.45, 0.33, 0.07)      # median 80, IQR 80-90
CEA_MEDIAN, CEA_LOG_SD = 3.1, 1.115                                   # IQR ~1.8-8.1 ng/mL
HB_MEAN, HB_SD = 121.8, 17.3                                          # g/L
P_SMOKING, P_DIABETES = 0.61, 0.09
P_T34, P_N23, P_M1 = 0.71, 0.75, 0.42
HISTOLOGY = (("squamous", 0.59), ("adenocarcinoma", 0.37), ("other", 0.04))
RT_TECHNIQUE = (("IGRT", 0.64), ("IMRT", 0.30), ("3D-CRT", 0.06))
TREATMENT_MODE = (("CCRT", 0.65), ("RT", 0.21), ("SCRT", 0.14))
RX_VALUES, RX_P = (60.0, 62.0, 63.0, 64.0, 66.0), (0.30, 0.10, 0.15, 0.10, 0.35)  # median 63, IQR 60-66
CENTRES = (("A", 0.45), ("B", 0.35), ("C", 0.20))

# --- centre (scanner / planning system) effects, only with ``--centres K`` -------------------------
# Centre k (0-based) has direction d_k = (-1)^k / 2^(k // 2): +1, -1, +0.5, -0.5, +0.25, ... so one
# centre is always "shifted" (+1). At --centre-shift S it gets, on its images only (the truth never
# depends on the centre): a CT calibration offset of S * d_k * CENTRE_HU_OFFSET HU, a texture/noise
# gain exp(S * d_k * CENTRE_LOG_GAIN) (a sharper or smoother reconstruction kernel: it multiplies the
# tumour's texture field and the noise), and a dose calibration factor 1 + S * d_k * CENTRE_DOSE_SCALE.
CENTRE_HU_OFFSET = 30.0
CENTRE_LOG_GAIN = 0.4
CENTRE_DOSE_SCALE = 0.03

# --- tumour, plan and cold spot --------------------------------------------------------------------
RADIUS_MM = {"T1-2": (8.0, 18.0), "T3-4": (12.0, 30.0)}   # in-plane semi-axis, uniform
HETERO_HU = (6.0, 70.0)              # texture amplitude (SD of the random field), log-uniform
CORR_MM = (1.5, 6.0)                 # texture correlation length, uniform (a nuisance, not in truth)
PTV_MARGIN_MM = (5.0, 8.0)
PENUMBRA_80_20_MM = (5.0, 8.0)
P_COLD_SPOT = 0.55
COLD_DEPTH = (0.05, 0.45)            # fraction of the local dose removed at the cold spot's centre
COLD_RADIUS = (0.25, 0.6)            # Gaussian sigma of the cold spot, as a fraction of the semi-axis

# --- ground-truth outcome model (logit of P(resistant)) -------------------------------------------
# Standardisation constants are fixed (population values of this generator, not cohort estimates),
# so a patient's truth never depends on who else is in the cohort.
LOG_HETERO_MEAN = 0.5 * (math.log(HETERO_HU[0]) + math.log(HETERO_HU[1]))
LOG_HETERO_SD = (math.log(HETERO_HU[1]) - math.log(HETERO_HU[0])) / math.sqrt(12.0)
DEFICIT_MEAN, DEFICIT_SD = 0.045, 0.055
BETA_HETERO = 1.0                    # per SD of log heterogeneity: more heterogeneous -> resistant
BETA_DEFICIT = 1.0                   # per SD of GTV mean dose deficit: colder target -> resistant
LOG_OR_HB = math.log(0.975)          # per g/L (paper: OR 0.975), centred at HB_MEAN
LOG_OR_T34 = math.log(0.432)         # T3-4 vs T1-2 (paper: OR 0.432, taken at face value)
INTERCEPT = 0.6                      # gives ~50 % resistant

# --- survival (months) ----------------------------------------------------------------------------
PFS_MEDIAN = {0: 14.0, 1: 6.0}       # sensitive / resistant
PPS_MEDIAN = {0: 16.0, 1: 10.0}      # survival after progression
WEIBULL_SHAPE = 1.2
RISK_ON_HAZARD = 0.3                 # hazard x exp(0.3 * centred logit)
FOLLOW_UP_MONTHS = (12.0, 60.0)      # administrative censoring, uniform
LOSS_MEAN_MONTHS = 150.0             # loss to follow-up, exponential

MANIFEST_COLUMNS = [
    "patient_id", "ct", "dose", "gtv", "gtv_label", "dose_unit", "centre",
    "age", "sex", "kps", "cea", "hb", "smoking", "diabetes", "t_stage", "n_stage", "m_stage",
    "tnm_stage", "histology", "rt_technique", "treatment_mode", "prescribed_dose",
    "response", "outcome", "pfs_months", "pfs_event", "os_months", "os_event",
]


@dataclass
class SynthCohort:
    """What :func:`generate_cohort` made: the manifest and ground truth tables, and the folder."""

    manifest: pd.DataFrame
    ground_truth: pd.DataFrame
    out_dir: Path | None
    seconds: float

    @property
    def oracle_auc(self) -> float:
        """AUC of the true probabilities against the drawn outcomes (the ceiling for any model)."""
        from sklearn.metrics import roc_auc_score
        return float(roc_auc_score(self.ground_truth["outcome"], self.ground_truth["true_p"]))


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # stream 0: clinical, latent factors, outcome; stream 1: image noise and shape details
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(index, stream)))


def _choice(rng, pairs):
    names = [p[0] for p in pairs]
    probs = np.array([p[1] for p in pairs], float)
    return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def _weibull_time(rng, median: float, hazard_ratio: float) -> float:
    # S(t) = exp(-(t/scale)^k * HR); scale set so that the median is `median` at HR = 1
    scale = median / math.log(2.0) ** (1.0 / WEIBULL_SHAPE)
    u = rng.uniform(1e-12, 1.0)
    return scale * (-math.log(u) / hazard_ratio) ** (1.0 / WEIBULL_SHAPE)


def _mean_cold_deficit(a: float, b: float, angle: float, depth: float, sigma: float,
                       cx: float, cy: float) -> float:
    """Mean relative dose removed by the cold spot over the GTV's central cross-section (an ellipse).

    Evaluated on a fine 2D grid of the ideal ellipse, so it needs no image; the ROIs on the largest
    slice see the same deficit up to the contour's irregularity and the dose grid's resolution.
    """
    g = np.linspace(-1.0, 1.0, 81)
    u, v = np.meshgrid(g * a, g * b, indexing="xy")          # tumour frame
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    c, s = math.cos(angle), math.sin(angle)
    x, y = u * c - v * s, u * s + v * c                     # rotate into the patient frame
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    return float(np.mean(depth * np.exp(-r2[inside] / (2.0 * sigma ** 2))))


@dataclass(frozen=True)
class CentreDesign:
    """``--centres K`` equally likely centres named ``names`` with a scanner effect of size ``shift``."""

    names: tuple[str, ...]
    shift: float = 0.0

    @staticmethod
    def make(k: int, shift: float = 0.0, names=None) -> "CentreDesign":
        if k < 1:
            raise InputError(f"--centres needs at least 1 centre, got {k}")
        if names is None:
            names = [chr(ord("A") + i) if i < 26 else f"C{i + 1}" for i in range(k)]
        names = tuple(str(n).strip() for n in names)
        if len(names) != k or len(set(names)) != k or not all(names):
            raise InputError(f"--centre-names needs {k} distinct non-empty names, got {','.join(names)!r}")
        if not math.isfinite(shift) or abs(shift) > 5:
            raise InputError(f"--centre-shift must be a number between -5 and 5, got {shift}")
        return CentreDesign(names, float(shift))

    def effect(self, centre: str) -> dict:
        k = self.names.index(centre)
        d = (-1.0) ** k / 2.0 ** (k // 2)
        return {"centre_direction": d,
                "centre_hu_offset": self.shift * d * CENTRE_HU_OFFSET,
                "centre_texture_gain": math.exp(self.shift * d * CENTRE_LOG_GAIN),
                "centre_dose_scale": 1.0 + self.shift * d * CENTRE_DOSE_SCALE}


def draw_patient(seed: int, index: int, centres: CentreDesign | None = None) -> dict:
    """One patient's clinical variables, latent tumour/plan factors, true probability and outcome.

    ``centres=None`` is the default cohort (centres A/B/C at 45/35/20 %, no centre effect);
    a :class:`CentreDesign` draws the centre uniformly among its names (one draw either way, so
    every other variable of the patient is the same) and records the centre's image effect.
    """
    rng = _rng(seed, index, 0)
    p: dict = {}
    if centres is None:
        p["centre"] = _choice(rng, CENTRES)
    else:
        p["centre"] = _choice(rng, [(n, 1.0) for n in centres.names])
        p.update(centres.effect(p["centre"]))
    p["age"] = int(round(float(np.clip(rng.normal(AGE_MEAN, AGE_SD), 30, 88))))
    p["sex"] = "M" if rng.random() < P_MALE else "F"
    p["kps"] = int(KPS_VALUES[int(rng.choice(len(KPS_VALUES), p=KPS_P))])
    p["cea"] = round(float(np.clip(CEA_MEDIAN * math.exp(rng.normal(0.0, CEA_LOG_SD)), 0.2, 500.0)), 1)
    p["hb"] = int(round(float(np.clip(rng.normal(HB_MEAN, HB_SD), 70, 175))))
    p["smoking"] = int(rng.random() < P_SMOKING)
    p["diabetes"] = int(rng.random() < P_DIABETES)
    t34 = rng.random() < P_T34
    n23 = rng.random() < P_N23
    m1 = rng.random() < P_M1
    p["t_stage"] = "T3-4" if t34 else "T1-2"
    p["n_stage"] = "N2-3" if n23 else "N0-1"
    p["m_stage"] = "M1" if m1 else "M0"
    # TNM follows from T, N and M (AJCC 8 in outline): M1 -> IV; T1-2 N0-1 M0 mostly I-II; else III
    if m1:
        p["tnm_stage"] = "IV"
    elif not t34 and not n23:
        p["tnm_stage"] = "I-II"
    else:
        p["tnm_stage"] = "III"
    p["histology"] = _choice(rng, HISTOLOGY)
    p["rt_technique"] = _choice(rng, RT_TECHNIQUE)
    p["treatment_mode"] = _choice(rng, TREATMENT_MODE)
    p["prescribed_dose"] = float(RX_VALUES[int(rng.choice(len(RX_VALUES), p=RX_P))])

    # tumour
    lo, hi = RADIUS_MM[p["t_stage"]]
    a = float(rng.uniform(lo, hi))
    b = a * float(rng.uniform(0.75, 1.0))
    c = min(a * float(rng.uniform(0.6, 0.9)), 22.0)
    p.update(radius_a_mm=a, radius_b_mm=b, radius_c_mm=c, angle_rad=float(rng.uniform(0, math.pi)),
             centre_x_mm=float(rng.uniform(-5, 5)), centre_y_mm=float(rng.uniform(-5, 5)),
             centre_z_mm=float(rng.uniform(-3, 3)), irregularity=float(rng.uniform(0.05, 0.2)))
    p["hetero_hu"] = float(math.exp(rng.uniform(math.log(HETERO_HU[0]), math.log(HETERO_HU[1]))))
    p["corr_mm"] = float(rng.uniform(*CORR_MM))
    p["chest_wall_side"] = int(rng.choice([-1, 1]))

    # plan
    p["ptv_margin_mm"] = float(rng.uniform(*PTV_MARGIN_MM))
    p["penumbra_mm"] = float(rng.uniform(*PENUMBRA_80_20_MM))
    p["bath_fraction"] = float(rng.uniform(0.12, 0.3))
    p["bath_length_mm"] = float(rng.uniform(15, 35))
    n_beams = int(rng.integers(3, 8))
    p["beam_angles"] = [float(x) for x in np.sort(rng.uniform(0, math.pi, n_beams))]
    has_cold = rng.random() < P_COLD_SPOT
    p["cold_depth"] = float(rng.uniform(*COLD_DEPTH)) if has_cold else 0.0
    p["cold_sigma_mm"] = float(rng.uniform(*COLD_RADIUS)) * a
    rr, th = math.sqrt(rng.uniform(0, 1)) * 0.6, rng.uniform(0, 2 * math.pi)
    ux, uy = rr * a * math.cos(th), rr * b * math.sin(th)      # inside the ellipse, tumour frame
    ca, sa = math.cos(p["angle_rad"]), math.sin(p["angle_rad"])
    p["cold_dx_mm"], p["cold_dy_mm"] = ux * ca - uy * sa, ux * sa + uy * ca
    p["dose_deficit"] = (_mean_cold_deficit(a, b, p["angle_rad"], p["cold_depth"], p["cold_sigma_mm"],
                                            p["cold_dx_mm"], p["cold_dy_mm"]) if has_cold else 0.0)

    # ground truth
    z_het = (math.log(p["hetero_hu"]) - LOG_HETERO_MEAN) / LOG_HETERO_SD
    z_def = (p["dose_deficit"] - DEFICIT_MEAN) / DEFICIT_SD
    logit = (INTERCEPT + BETA_HETERO * z_het + BETA_DEFICIT * z_def
             + LOG_OR_HB * (p["hb"] - HB_MEAN) + LOG_OR_T34 * t34)
    p.update(z_hetero=z_het, z_deficit=z_def, true_logit=logit, true_p=float(expit(logit)))
    p["outcome"] = int(rng.random() < p["true_p"])
    if p["outcome"]:
        p["response"] = "SD" if rng.random() < 0.6 else "PD"
    else:
        p["response"] = "PR" if rng.random() < 0.85 else "CR"

    # survival: the outcome sets the median, the residual risk scales the hazard
    hr = math.exp(RISK_ON_HAZARD * (logit - INTERCEPT))
    pfs = _weibull_time(rng, PFS_MEDIAN[p["outcome"]], hr)
    os_ = pfs + _weibull_time(rng, PPS_MEDIAN[p["outcome"]], hr)
    censor = min(rng.uniform(*FOLLOW_UP_MONTHS), rng.exponential(LOSS_MEAN_MONTHS))
    p["pfs_months"] = round(max(min(pfs, censor), 0.1), 1)
    p["pfs_event"] = int(pfs <= censor)
    p["os_months"] = round(max(min(os_, censor), 0.1), 1)
    p["os_event"] = int(os_ <= censor)
    return p


# --- images ---------------------------------------------------------------------------------------

def _field(rng, shape, sigma_mm, spacing_zyx) -> np.ndarray:
    """A unit-variance Gaussian random field with correlation length ``sigma_mm``."""
    white = rng.standard_normal(shape).astype(np.float32)
    f = ndimage.gaussian_filter(white, [sigma_mm / s for s in spacing_zyx], mode="wrap")
    return f / max(float(f.std()), 1e-6)


def _phi(x):
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


def make_images(p: dict, seed: int, index: int):
    """The patient's CT (int16 HU), dose (float32 Gy, coarser grid) and GTV (uint8) as SimpleITK images."""
    import SimpleITK as sitk

    rng = _rng(seed, index, 1)
    nx, ny, nz = CT_SHAPE_XYZ
    sx, sy, sz = CT_SPACING
    spacing_zyx = (sz, sy, sx)
    origin = (-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2)
    z, y, x = np.meshgrid(origin[2] + sz * np.arange(nz), origin[1] + sy * np.arange(ny),
                          origin[0] + sx * np.arange(nx), indexing="ij")
    shape = (nz, ny, nx)

    # lung parenchyma with slow density variation, a chest wall (muscle, rib, fat, air beyond the
    # skin) on one side and mediastinal soft tissue on the other, and a few vessels
    side = p["chest_wall_side"]
    xs = side * x
    wall = 52.0 - 0.004 * y ** 2
    ct = -830.0 + 25.0 * _field(rng, shape, 8.0, spacing_zyx)
    ct = np.where(xs > wall, 40.0, ct)
    rib_y = rng.uniform(-30, 30)
    ct = np.where(((xs - wall - 6) / 5) ** 2 + ((y - rib_y) / 8) ** 2 + (z / 40) ** 2 < 1, 600.0, ct)
    ct = np.where(xs > wall + 14, -90.0, ct)
    body = xs <= wall + 22
    ct = np.where(body, ct, -1000.0)
    ct = np.where(xs < -66.0 + 4.0 * np.sin(y / 15.0), 35.0, ct)
    for _ in range(int(rng.integers(3, 7))):
        vx, vy, r = rng.uniform(-60, 40), rng.uniform(-60, 60), rng.uniform(1.5, 3.5)
        tilt_x, tilt_y = rng.uniform(-0.5, 0.5, 2)
        ct = np.where((side * x - vx - tilt_x * z) ** 2 + (y - vy - tilt_y * z) ** 2 < r * r, 40.0, ct)

    # tumour: irregular ellipsoid, soft tissue with a textured random field inside
    dx, dy, dz = x - p["centre_x_mm"], y - p["centre_y_mm"], z - p["centre_z_mm"]
    ca, sa = math.cos(p["angle_rad"]), math.sin(p["angle_rad"])
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    rho = np.sqrt((u / p["radius_a_mm"]) ** 2 + (v / p["radius_b_mm"]) ** 2 + (dz / p["radius_c_mm"]) ** 2)
    rho = rho * (1.0 + p["irregularity"] * _field(rng, shape, p["radius_a_mm"] / 3.0, spacing_zyx))
    gtv = rho < 1.0
    labels, n = ndimage.label(gtv)
    if n > 1:  # keep the main body only: a GTV is one lesion
        sizes = ndimage.sum(gtv, labels, range(1, n + 1))
        gtv = labels == (1 + int(np.argmax(sizes)))
    gain = p.get("centre_texture_gain", 1.0)
    texture = 35.0 + gain * p["hetero_hu"] * _field(rng, shape, p["corr_mm"], spacing_zyx)
    edge = np.clip(0.5 + (1.0 - rho) / 0.1, 0.0, 1.0)      # thin partial-volume rim at the contour
    ct = np.where(gtv, edge * texture + (1 - edge) * ct, ct)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 0.6)
    ct = ct + gain * CT_NOISE_HU * noise / max(float(noise.std()), 1e-6)
    if "centre_hu_offset" in p:  # the scanner's calibration offset applies inside the body only
        ct = np.where(body, ct + p["centre_hu_offset"], ct)
    ct = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)

    # dose: conformal to the PTV with an error-function penumbra, beam entrance/exit channels and a
    # low-dose bath, a little hot/cold modulation, and (for some) a cold spot in the target
    rx = p["prescribed_dose"]
    dist_out = ndimage.distance_transform_edt(~gtv, sampling=spacing_zyx)
    s = dist_out - p["ptv_margin_mm"]                       # mm beyond the PTV surface
    sigma = p["penumbra_mm"] / 1.683                        # 80-20 % width of an erf edge = 1.683 sigma
    core = _phi(1.645 - s / sigma)                          # 95 % of prescription on the PTV surface
    width = math.sqrt(p["radius_a_mm"] * p["radius_b_mm"]) + p["ptv_margin_mm"]
    beams = np.zeros(shape, np.float32)
    for ang in p["beam_angles"]:
        perp = np.abs(-dx * math.sin(ang) + dy * math.cos(ang))
        beams += _phi((width - perp) / sigma)
    beams *= 0.35 / max(len(p["beam_angles"]), 1)
    bath = p["bath_fraction"] * np.exp(-np.maximum(s, 0.0) / p["bath_length_mm"])
    rel = core + (1.0 - core) * np.minimum(bath + beams, 0.6)
    rel *= 1.0 + 0.015 * _field(rng, shape, 10.0, spacing_zyx)
    if p["cold_depth"] > 0:
        r2 = ((x - p["centre_x_mm"] - p["cold_dx_mm"]) ** 2 + (y - p["centre_y_mm"] - p["cold_dy_mm"]) ** 2
              + (z - p["centre_z_mm"]) ** 2)
        rel *= 1.0 - p["cold_depth"] * np.exp(-r2 / (2.0 * p["cold_sigma_mm"] ** 2))
    dose = np.where(body, rx * rel * p.get("centre_dose_scale", 1.0), 0.0).astype(np.float32)
    k = DOSE_BLOCK
    dose = dose.reshape(nz, ny // k, k, nx // k, k).mean(axis=(2, 4), dtype=np.float64).astype(np.float32)

    def image(arr, spacing, org):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin(org)
        return img

    ct_img = image(ct, CT_SPACING, origin)
    gtv_img = image(gtv.astype(np.uint8), CT_SPACING, origin)
    dose_origin = (origin[0] + (k - 1) * sx / 2, origin[1] + (k - 1) * sy / 2, origin[2])
    dose_img = image(dose, (sx * k, sy * k, sz), dose_origin)
    dose_img.SetMetaData("dose_unit", "Gy")
    return ct_img, dose_img, gtv_img


def _patient_ids(n: int) -> list[str]:
    width = max(4, len(str(n)))
    return [f"SYN{i + 1:0{width}d}" for i in range(n)]


def generate_cohort(n: int, seed: int, out_dir=None, images: bool = True,
                    centres: CentreDesign | None = None) -> SynthCohort:
    """Draw ``n`` patients from ``seed``; with ``out_dir``, write images, manifest, truth and README.

    ``images=False`` skips the volumes (the manifest then has no ``ct``/``dose``/``gtv`` files to
    point to, and is not written); clinical data, truth and outcomes are the same either way.
    ``centres`` (see :class:`CentreDesign`) replaces the default centres and adds their image effects.
    """
    import SimpleITK as sitk

    if n < 1:
        raise InputError(f"the cohort needs at least one patient, got --n {n}")
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and images:
        ensure_folder(out / "images")
    rows, truth = [], []
    for i, pid in enumerate(_patient_ids(n)):
        p = draw_patient(seed, i, centres)
        rel = {k: f"images/{pid}/{k}.nrrd" for k in ("ct", "dose", "gtv")}
        if out is not None and images:
            ct, dose, gtv = make_images(p, seed, i)
            folder = out / "images" / pid
            for name, img in (("ct", ct), ("dose", dose), ("gtv", gtv)):
                with atomic_output_path(folder / f"{name}.nrrd") as tmp:
                    sitk.WriteImage(img, str(tmp), useCompression=True)
        row = {"patient_id": pid, **rel, "gtv_label": 1, "dose_unit": "Gy"}
        row.update({k: p[k] for k in MANIFEST_COLUMNS if k in p})
        rows.append(row)
        t = {"patient_id": pid, "true_p": p["true_p"], "true_logit": p["true_logit"],
             "outcome": p["outcome"]}
        t.update({k: v for k, v in p.items() if k not in t and k not in MANIFEST_COLUMNS
                  and not isinstance(v, list)})
        t.update(hb=p["hb"], t_stage=p["t_stage"], prescribed_dose=p["prescribed_dose"])
        truth.append(t)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    ground_truth = pd.DataFrame(truth)
    cohort = SynthCohort(manifest, ground_truth, out, 0.0)
    if out is not None:
        # the manifest last, in one group with the truth: a cohort cut short has no manifest
        files = {out / "ground_truth.csv": ground_truth.to_csv(index=False, lineterminator="\n",
                                                               float_format="%.6g"),
                 out / "README.md": _readme(n, seed, cohort, centres)}
        if images:
            files[out / "manifest.csv"] = manifest.to_csv(index=False, lineterminator="\n")
        atomic_write_files(files)
    cohort.seconds = time.perf_counter() - t0
    return cohort


def _centre_readme(centres: CentreDesign | None) -> tuple[str, str]:
    if centres is None:
        return "", ""
    opts = f" --centres {len(centres.names)} --centre-shift {centres.shift:g} --centre-names {','.join(centres.names)}"
    rows = "\n".join(f"| {c} | {e['centre_direction']:+g} | {e['centre_hu_offset']:+.1f} | "
                     f"{e['centre_texture_gain']:.3f} | {e['centre_dose_scale']:.3f} |"
                     for c in centres.names for e in [centres.effect(c)])
    text = f"""
## Centres and their effects
{len(centres.names)} centres, equally likely. Each centre changes its images only (the ground truth
does not depend on the centre): a CT offset inside the body, a gain on the tumour texture and the noise
(a reconstruction kernel), and a dose calibration factor. Direction d_k = +1, -1, +0.5, -0.5, ...;
offset = {centres.shift:g} x d_k x {CENTRE_HU_OFFSET:g} HU, gain = exp({centres.shift:g} x d_k x
{CENTRE_LOG_GAIN:g}), dose factor = 1 + {centres.shift:g} x d_k x {CENTRE_DOSE_SCALE:g}.

| centre | d_k | CT offset (HU) | texture/noise gain | dose factor |
|---|---|---|---|---|
{rows}

The columns `centre_*` of `ground_truth.csv` give each patient's centre effect.
"""
    return opts, text


def _readme(n: int, seed: int, cohort: SynthCohort, centres: CentreDesign | None = None) -> str:
    gt = cohort.ground_truth
    opts, centre_text = _centre_readme(centres)
    return f"""# Synthetic NSCLC radiochemotherapy cohort (DoseRadiomics `synth`)

Generated by DoseRadiomics `synth --n {n} --seed {seed}{opts}`. Same seed, same bytes. Not real patients.

## Files
- `manifest.csv`: the cohort manifest (`doseradiomics cohort-extract --manifest manifest.csv`).
- `images/<id>/ct.nrrd` (int16 HU, {CT_SHAPE_XYZ[0]}x{CT_SHAPE_XYZ[1]}x{CT_SHAPE_XYZ[2]} voxels at
  {CT_SPACING[0]}x{CT_SPACING[1]}x{CT_SPACING[2]} mm), `dose.nrrd` (float32 Gy on a
  {DOSE_BLOCK}x coarser in-plane grid, `dose_unit:=Gy`), `gtv.nrrd` (uint8 label 1 on the CT grid).
- `ground_truth.csv`: per patient the true probability of resistance (`true_p`), its logit and the
  latent factors (tumour size, texture amplitude `hetero_hu` and correlation length `corr_mm`,
  cold-spot depth/size/position, mean dose deficit `dose_deficit`, plan parameters).

## Images
A chest crop: lung parenchyma (-830 HU, slow density variation), a chest wall (muscle, one rib,
fat, air outside the skin) on one side, mediastinal soft tissue on the other, a few vessels, and
correlated noise ({CT_NOISE_HU:g} HU). The tumour is an irregular ellipsoid (in-plane semi-axis
uniform {RADIUS_MM['T1-2']} mm for T1-2, {RADIUS_MM['T3-4']} mm for T3-4) of 35 HU soft tissue
plus a Gaussian random field of amplitude `hetero_hu` (log-uniform {HETERO_HU} HU) and correlation
length `corr_mm` (uniform {CORR_MM} mm).

The planned dose covers a PTV (GTV + {PTV_MARGIN_MM} mm) with 95 % of the prescription on its
surface and an error-function fall-off of {PENUMBRA_80_20_MM} mm (80-20 %), plus beam channels
and a low-dose bath, a +-1.5 % modulation, and in {P_COLD_SPOT:.0%} of patients a Gaussian cold spot
(depth {COLD_DEPTH}, sigma {COLD_RADIUS} x the tumour's in-plane semi-axis) inside the GTV on its central slice.

## Clinical variables (Zhang et al. 2025, Table 1)
Age N({AGE_MEAN}, {AGE_SD}); male {P_MALE:.0%}; KPS {dict(zip(KPS_VALUES, KPS_P))}; CEA log-normal
(median {CEA_MEDIAN}, log-SD {CEA_LOG_SD}); Hb N({HB_MEAN}, {HB_SD}) g/L; smoking {P_SMOKING:.0%};
diabetes {P_DIABETES:.0%}; T3-4 {P_T34:.0%}, N2-3 {P_N23:.0%}, M1 {P_M1:.0%}; TNM from T/N/M;
histology {dict(HISTOLOGY)}; RT technique {dict(RT_TECHNIQUE)}; treatment mode {dict(TREATMENT_MODE)};
prescribed dose {dict(zip(RX_VALUES, RX_P))} Gy; centre {dict(CENTRES) if centres is None else "see below"}.
{centre_text}
## Ground truth
    logit P(resistant) = {INTERCEPT} + {BETA_HETERO} * z_hetero + {BETA_DEFICIT} * z_deficit
                         + ln(0.975) * (Hb - {HB_MEAN}) + ln(0.432) * [T3-4]
- `z_hetero` = (ln hetero_hu - {LOG_HETERO_MEAN:.3f}) / {LOG_HETERO_SD:.3f} (GTV texture on CT);
- `z_deficit` = (dose_deficit - {DEFICIT_MEAN}) / {DEFICIT_SD}, where `dose_deficit` is the mean
  fraction of the local dose the cold spot removes over the GTV's central cross-section (GTV-heat
  and 50Gy-heat see it);
- Hb and T stage odds ratios are the paper's (0.975 per g/L, 0.432 for T stage).
`outcome` ~ Bernoulli(true_p) (1 = resistant: RECIST SD/PD; 0 = sensitive: CR/PR, column `response`).

This cohort: {len(gt)} patients, {gt['outcome'].mean():.1%} resistant, oracle AUC
(`roc_auc_score(outcome, true_p)`) = {cohort.oracle_auc if gt['outcome'].nunique() == 2 else float('nan'):.3f}.

## Survival
PFS is Weibull (shape {WEIBULL_SHAPE}) with median {PFS_MEDIAN[0]} months if sensitive and
{PFS_MEDIAN[1]} if resistant, hazard x exp({RISK_ON_HAZARD} * (logit - {INTERCEPT})); OS = PFS +
post-progression survival (median {PPS_MEDIAN[0]} / {PPS_MEDIAN[1]} months, same hazard ratio).
Censoring: administrative (uniform {FOLLOW_UP_MONTHS} months) or loss to follow-up (exponential, mean
{LOSS_MEAN_MONTHS:g} months), whichever comes first.
"""


def register_cli(subparsers) -> None:
    """Add the ``synth`` subcommand."""
    p = subparsers.add_parser(
        "synth", help="generate a synthetic cohort (CT, dose, GTV, clinical data, outcomes) with known truth",
        description="Write a synthetic NSCLC radiochemotherapy cohort: per patient a chest CT crop with a "
                    "lung tumour, a planned dose and the GTV (NRRD), plus manifest.csv, ground_truth.csv "
                    "and README.md. The outcome follows a documented model of tumour texture, target "
                    "cold spots, haemoglobin and T stage. Same seed, same files.")
    p.add_argument("--n", type=int, default=220, help="number of patients (default 220, as in the paper)")
    p.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--centres", type=int, metavar="K",
                   help="K equally likely centres (named A, B, ... or --centre-names) with a scanner effect "
                        "of size --centre-shift on their images; default: centres A/B/C (45/35/20 %%), no effect")
    p.add_argument("--centre-shift", type=float, default=1.0, metavar="S",
                   help="size of the centre effect with --centres (default 1: CT offset 30 HU, texture/noise "
                        "gain exp(0.4), dose factor 1.03 for the first centre; 0 = none); see README.md")
    p.add_argument("--centre-names", metavar="A,B,...",
                   help="comma-separated names of the --centres K centres (e.g. X for one external centre)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty (its manifest, truth, README and images "
                        "of the same patient ids are replaced)")
    p.add_argument("--no-images", action="store_true",
                   help="write only ground_truth.csv and README.md (clinical data and truth), no images")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``synth`` from parsed arguments."""
    out = check_output_folder(args.out)
    if out.is_dir() and not args.force and any(out.iterdir()):
        raise OutputError(f"the output folder is not empty ({sum(1 for _ in out.iterdir())} entries); "
                          "synth would replace its manifest, truth and images", path=args.out,
                          hint="choose an empty or new folder, or add --force to replace them")
    centres = None
    if args.centres is not None:
        names = args.centre_names.split(",") if args.centre_names else None
        centres = CentreDesign.make(args.centres, args.centre_shift, names)
    elif args.centre_names:
        raise InputError("--centre-names needs --centres K")
    cohort = generate_cohort(args.n, args.seed, out, images=not args.no_images, centres=centres)
    gt = cohort.ground_truth
    auc = cohort.oracle_auc if gt["outcome"].nunique() == 2 else float("nan")
    print(f"synth: {len(gt)} patients in {cohort.seconds:.1f} s, {gt['outcome'].mean():.1%} resistant, "
          f"oracle AUC {auc:.3f}; manifest: {out / 'manifest.csv'}", file=sys.stderr)
    return 0
