"""A pyradiomics that computes differently under the same version string, for the tests of the
compatibility checks (fingerprint, cohort resume, the Slicer Logic's predict): the change is made in
pyradiomics and in the library's exact engine (DoseRadiomicsLib/engine), which computes the feature
classes where its parity is proven, so both routes see it."""

from __future__ import annotations


def glcm_contrast_plus_one_percent(monkeypatch) -> None:
    """glcm Contrast 1 % higher, in pyradiomics and in the engine."""
    from radiomics import glcm

    from DoseRadiomicsLib.engine import glcm as engine_glcm

    original = glcm.RadiomicsGLCM.getContrastFeatureValue
    monkeypatch.setattr(glcm.RadiomicsGLCM, "getContrastFeatureValue", lambda self: original(self) * 1.01)
    engine_features = engine_glcm.features

    def changed(*a, **k):
        out = engine_features(*a, **k)
        for d in out:
            d["Contrast"] = d["Contrast"] * 1.01
        return out
    monkeypatch.setattr(engine_glcm, "features", changed)
