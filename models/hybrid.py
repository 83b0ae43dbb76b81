"""The hybrid network: a dm-dt CNN branch and a dense branch on the feature vector (issue 13).

The shape SCoPe uses on ZTF ("combining with unstructured data", Mahabal's talk): one
Keras model with two inputs, trained end to end,

* ``dmdt``: the CNN's image branch (the convolutions and first dense layer of ``arch``,
  :func:`models.cnn.build_network`, up to its class scores);
* ``features``: the light-curve feature vector, robustly standardised inside the network
  (a ``Normalization`` layer with each feature's training median and 3 x its
  interquartile range / 1.349, then ``tanh``, which keeps heavy tails such as periods of
  thousands of days from dominating), then two dense layers (128, 64 units, ReLU);

joined (concatenated), one dense layer of 128 units and the class scores (``logits``)
and softmax. Missing features (NaN, +-inf: e.g. no period found) are set to the training
median before the network sees them, i.e. to 0 after the scaler. The scaler lives in the
``.keras`` file; the feature names (``input_meta_['feature_names']``) and the medians in
``model.json`` beside it, so one model folder holds everything
(:meth:`models.cnn.DmDtCNN.save`).

:class:`HybridCNN` is a :class:`models.cnn.DmDtCNN` (same training: validation split,
optional capped balanced class weights, early stopping, learning-rate schedule, seeds)
whose input is a dict ``{"dmdt": images, "features": feature matrix}``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from pipeline.errors import ConfigError, InputError

from .cnn import ESTIMATORS, DmDtCNN, _check_images, _keras, build_network

__all__ = ["HybridCNN", "hybrid_inputs"]

#: IQR of a standard normal distribution: IQR / 1.349 estimates sigma
_IQR_SIGMA = 1.349
#: the scaler divides by this many robust sigmas before tanh
_SOFT_CLIP = 3.0


def hybrid_inputs(images: Any, features: Any) -> dict[str, np.ndarray]:
    """The hybrid network's input from images (n, n_dm, n_dt[, n_channels]) and features
    (n, n_features); rows must be the same objects in the same order."""
    img = _check_images(images, "images")
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) != len(img):
        raise ValueError(f"features must have shape ({len(img)}, n_features), got "
                         f"{feats.shape}")
    return {"dmdt": img, "features": feats}


class HybridCNN(DmDtCNN):
    """Two-branch classifier: dm-dt images (CNN) and the feature vector (dense), end to end.

    Parameters are those of :class:`models.cnn.DmDtCNN` (``arch`` names the image
    branch), plus

    feature_units : int, default=128
        Units of the first dense layer of the feature branch (the second has half).
    feature_dropout : float, default=0.3
        Dropout after each dense layer of the feature branch and of the joint layer.

    ``fit``, ``predict_proba`` and ``predict`` take ``X`` as a dict
    (:func:`hybrid_inputs`). Fitted attributes as :class:`models.cnn.DmDtCNN`, plus
    ``feature_center_`` (training medians, NaN features get them) and
    ``feature_scale_`` (robust sigmas).
    """

    def __init__(self, arch: str = "vgg6", epochs: int = 30, batch_size: int = 64,
                 learning_rate: float | None = None, validation_fraction: float = 0.15,
                 patience: int = 4, lr_patience: int = 2, lr_factor: float = 0.5,
                 class_weight: str | None = None, max_class_weight: float | None = 10.0,
                 label_smoothing: float = 0.0,
                 inference_batch_size: int = 512, random_state: int = 0, verbose: int = 0,
                 feature_units: int = 128, feature_dropout: float = 0.3) -> None:
        super().__init__(arch=arch, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, validation_fraction=validation_fraction,
                         patience=patience, lr_patience=lr_patience, lr_factor=lr_factor,
                         class_weight=class_weight, max_class_weight=max_class_weight,
                         label_smoothing=label_smoothing,
                         inference_batch_size=inference_batch_size,
                         random_state=random_state, verbose=verbose)
        self.feature_units = feature_units
        self.feature_dropout = feature_dropout

    # ------------------------------------------------------------------ inputs

    def _check_params(self) -> None:
        super()._check_params()
        if int(self.feature_units) < 2:
            raise ConfigError("feature_units must be >= 2")
        if not 0.0 <= float(self.feature_dropout) < 1.0:
            raise ConfigError("feature_dropout must be in [0, 1)")

    @staticmethod
    def _as_dict(X: Any) -> dict[str, np.ndarray]:
        if not isinstance(X, dict) or set(X) != {"dmdt", "features"}:
            raise ValueError("the hybrid network takes X = {'dmdt': images, 'features': "
                             "feature matrix} (models.hybrid.hybrid_inputs)")
        return hybrid_inputs(X["dmdt"], X["features"])

    def _impute(self, X: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        f = X["features"]
        bad = ~np.isfinite(f)
        if bad.any():
            f = np.where(bad, self.feature_center_[None, :], f)
        return {"dmdt": X["dmdt"], "features": f.astype(np.float32)}

    def _fit_inputs(self, X: Any) -> Any:
        X = self._as_dict(X)
        f = np.where(np.isfinite(X["features"]), X["features"], np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a feature missing everywhere
            center = np.nanmedian(f, axis=0)
            iqr = np.nanpercentile(f, 75, axis=0) - np.nanpercentile(f, 25, axis=0)
        center = np.where(np.isfinite(center), center, 0.0)
        scale = np.where(np.isfinite(iqr) & (iqr > 0), iqr / _IQR_SIGMA, 1.0)
        self.feature_center_ = center
        self.feature_scale_ = scale
        return self._impute(X)

    def _network(self, X: Any, n_classes: int) -> Any:
        keras = _keras()
        L = keras.layers
        base = build_network(self.arch, X["dmdt"].shape[1:], n_classes)
        image_part = base.get_layer("logits").input  # the image branch, up to its scores
        n_feat = X["features"].shape[1]
        f_in = keras.Input(shape=(n_feat,), name="features")
        x = L.Normalization(mean=self.feature_center_,
                            variance=(_SOFT_CLIP * self.feature_scale_) ** 2,
                            name="feature_scaler")(f_in)
        x = L.Activation("tanh", name="feature_soft_clip")(x)
        drop = float(self.feature_dropout)
        x = L.Dense(int(self.feature_units), activation="relu", name="feat_fc1")(x)
        x = L.Dropout(drop, name="feat_drop1")(x)
        x = L.Dense(max(1, int(self.feature_units) // 2), activation="relu",
                    name="feat_fc2")(x)
        joint = L.Concatenate(name="join")([image_part, x])
        joint = L.Dense(128, activation="relu", name="joint_fc")(joint)
        joint = L.Dropout(drop, name="joint_drop")(joint)
        logits = L.Dense(n_classes, name="logits")(joint)
        out = L.Activation("softmax", name="softmax")(logits)
        return keras.Model({"dmdt": base.inputs[0], "features": f_in}, out,
                           name=f"hybrid_{self.arch}")

    @staticmethod
    def _shape_of(X: Any) -> Any:
        return {"dmdt": [int(s) for s in X["dmdt"].shape[1:]],
                "features": [int(X["features"].shape[1])]}

    def _check_predict_X(self, X: Any) -> Any:
        check_is_fitted(self, "model_")
        X = self._as_dict(X)
        want = {k: tuple(v) for k, v in dict(self.input_shape_).items()}
        got = {"dmdt": X["dmdt"].shape[1:], "features": X["features"].shape[1:]}
        for k in ("dmdt", "features"):
            if tuple(got[k]) != want[k]:
                raise InputError(f"<{k}>", f"{k} input of shape {tuple(got[k])} given to a "
                                 f"hybrid model trained on shape {want[k]}")
        return self._impute(X)

    # ------------------------------------------------------------------ persistence

    def _extra_meta(self) -> dict[str, Any]:
        return {"feature_center": [float(v) for v in self.feature_center_],
                "feature_scale": [float(v) for v in self.feature_scale_]}

    def _load_extra(self, meta: dict[str, Any]) -> None:
        for key in ("feature_center", "feature_scale"):
            if key not in meta:
                raise InputError("model.json", f"hybrid model metadata lacks {key}")
        self.feature_center_ = np.asarray(meta["feature_center"], dtype=np.float64)
        self.feature_scale_ = np.asarray(meta["feature_scale"], dtype=np.float64)
        self.input_shape_ = dict(meta["input_shape"])

    # ------------------------------------------------------------------ maps

    def saliency(self, X: Any, target: Any = None) -> np.ndarray:
        raise ConfigError("saliency maps are computed for image-only CNNs, not the hybrid")

    def grad_cam(self, X: Any, target: Any = None) -> np.ndarray:
        raise ConfigError("class activation maps are computed for image-only CNNs, not the "
                          "hybrid")


ESTIMATORS["HybridCNN"] = HybridCNN
