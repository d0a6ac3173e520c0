"""Statistical primitives of the paper's analysis (pure numpy/scipy/pandas/scikit-learn/statsmodels).

Modules: ``roc`` (ROC, AUC, DeLong CI and test, Youden cut-off), ``calibration`` (Brier,
Hosmer-Lemeshow, calibration curve and slope), ``dca`` (decision curves), ``survival``
(Kaplan-Meier, log-rank, Cox hazard ratio), ``selection`` (min-max scaling, univariate filter,
LASSO), ``logistic`` (logistic models and odds-ratio tables). Bad input raises
:class:`~DoseRadiomicsLib.errors.DataError` saying what to do.
"""
