"""Settings of the main job (train and classify), declared once, validated before any work.

These pydantic models are the parameters of the Prefect flows
(:mod:`flows.train`, :mod:`flows.classify`) and what ``lcpipe train`` and
``lcpipe classify`` build from their options; every default is stated here
and nowhere else. A bad value raises ``pydantic.ValidationError``, which the
command line reports as one line naming the parameter (:func:`format_validation_error`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CNN_PRESETS", "IngestSettings", "TrainSettings", "ClassifySettings",
           "format_validation_error"]

#: CNN presets: name -> (input representation, architecture). 'best' is the
#: configuration that won the cross-validation (docs/cnn.md); 'faithful' is the
#: network and input of Mahabal et al. (2017).
CNN_PRESETS: dict[str, tuple[str, str]] = {"best": ("fine", "vgg6"),
                                           "faithful": ("paper", "mahabal2017")}


class IngestSettings(BaseModel):
    """How raw light curves are read, cleaned and chunked (train and classify)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["lcpipe", "crts", "ztf"] | None = Field(
        None, description="column names of a survey export (None: lcpipe's own names)")
    columns: str | None = Field(
        None, description="column mapping overrides, e.g. 't=MJD,mag_err=magerr'")
    bands: str | None = Field(
        None, description="band renames SOURCE=NAME, e.g. 'r=CSS_V' to feed r-band light "
        "curves to a bundle trained on CSS_V ('default=NAME' for input without a band column)")
    min_points: int = Field(10, ge=2, description="objects with fewer clean points are "
                            "quarantined")
    chunk_size: int = Field(2000, ge=1, description="light curves per task (one Prefect task "
                            "per chunk, never one per light curve)")
    max_failed_fraction: float = Field(
        0.1, ge=0.0, le=1.0, description="the run fails when a larger fraction of the input "
        "files or of the objects is lost to failed chunks")
    n_jobs: int = Field(2, ge=1, description="processes for the feature extraction of a chunk")


class TrainSettings(IngestSettings):
    """Parameters of the train flow (:func:`flows.train.train`)."""

    classes: str = Field("all", description="'all', 'paper7' (Mahabal et al. 2017) or a "
                         "comma-separated list of classes")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="fraction of each class "
                                 "held out for the test part (one stratified split, the same "
                                 "for every model)")
    cv_folds: int | None = Field(None, ge=2, description="also cross-validate every model on "
                                 "the training part with this many stratified folds")
    seed: int = Field(0, description="seed of the split, the folds and every model")
    refit: bool = Field(True, description="refit the bundle's models on all labelled objects "
                        "after the evaluation (False: the bundle holds the evaluated models)")
    cnn_preset: Literal["best", "faithful"] = Field(
        "best", description="'best' (vgg6 on the fine dm-dt grid) or 'faithful' "
        "(mahabal2017 on the authors' 22 x 24 grid)")
    cnn_epochs: int = Field(30, ge=1, description="maximum CNN epochs (early stopping)")
    cnn_learning_rate: float | None = Field(None, gt=0.0, description="initial Adam learning "
                                            "rate (None: the architecture's default, "
                                            "models.cnn.DEFAULT_LEARNING_RATE)")
    cnn_class_weight: Literal["balanced", "none"] = Field(
        "none", description="loss weights of the networks (CNN, hybrid): 'balanced' "
        "(n / (n_classes n_c), capped at cnn_max_class_weight) or 'none' (every object "
        "counts the same)")
    cnn_max_class_weight: float = Field(10.0, gt=0.0, description="cap of the balanced class "
                                        "weights of the CNN")
    cnn_label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing of "
                                       "the networks' loss (CNN, hybrid): 0 trains on the "
                                       "plain labels")
    forest_n_estimators: int = Field(500, ge=1, description="trees of the random forest")
    forest_min_samples_leaf: int = Field(1, ge=1, description="minimum objects per leaf")
    unknown_accuracy: float = Field(0.95, gt=0.0, le=1.0, description="with cv_folds, each "
                                    "model answers 'unknown' below the top probability at "
                                    "which its CV answers reach this accuracy")
    calibrate: bool = Field(True, description="with cv_folds, temperature-scale the "
                            "probabilities of each model (forest, networks), fitted on its "
                            "out-of-fold predictions (models.evaluation.fit_temperature); "
                            "the bundle applies the same temperatures")
    hybrid: bool = Field(False, description="also train the hybrid network (a CNN branch on "
                         "the dm-dt images and a dense branch on the features, end to end; "
                         "models.hybrid)")
    explain: bool = Field(True, description="write the per-class explanations: the forest's "
                          "permutation importances and class feature statistics, the CNN's "
                          "class activation, saliency and activation-maximisation maps")
    robustness_draws: int = Field(0, ge=0, description="redraw the test part's magnitudes "
                                  "from their error bars this many times and report how "
                                  "stable each model is, with the accuracy of thinned light "
                                  "curves and the networks' adversarial flip sizes "
                                  "(models.robustness; 0: off)")
    rpca_rank_background: int = Field(1, ge=1, description="rank of the survey background")
    rpca_rank_class: int = Field(5, ge=1, description="rank of each class background")

    @field_validator("classes")
    @classmethod
    def _classes_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name 'all', 'paper7' or classes")
        return v


class ClassifySettings(IngestSettings):
    """Parameters of the classify flow (:func:`flows.classify.classify`)."""


def format_validation_error(exc: Any, prefix: str = "") -> str:
    """One line from a ``pydantic.ValidationError``: ``parameter: problem (got value)``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        got = err.get("input")
        parts.append(f"{prefix}{loc}: {err.get('msg')} (got {got!r})")
    return "; ".join(parts)
