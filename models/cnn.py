"""Convolutional classifier of dm-dt images (Keras 3).

:class:`DmDtCNN` is a scikit-learn style estimator (``fit`` / ``predict`` /
``predict_proba``) over arrays of dm-dt images of shape
``(n_objects, n_dm, n_dt, n_channels)``. The network is one of
:data:`ARCHITECTURES`, built in ``fit``:

``mahabal2017``
    The network of Mahabal et al. (2017, arXiv:1709.06257) as in the authors'
    group code: Conv2D 16 5x5 relu, MaxPool 2, Conv2D 64 5x5 relu, Flatten,
    Dense softmax.
``vgg6``
    The braai (Duev et al. 2019) VGG-style network: 2 x Conv2D 16 3x3, MaxPool,
    Dropout 0.25, 2 x Conv2D 32 3x3, MaxPool, Dropout 0.25, Dense 256,
    Dropout 0.5, Dense softmax.
``dmdtnet``
    Ours: 3 x [Conv2D 3x3 with 'same' padding (16, 32, 64 filters; edge bins
    of the dm-dt grid are convolved as often as the centre), batch
    normalisation, relu, MaxPool 2, Dropout], Dense 128, Dropout 0.4, Dense
    softmax. The batch normalisation's momentum is 0.9, not Keras' 0.99: dm-dt
    pixels are faint (hundredths), the moving variance starts at 1, and at
    0.99 it was still far above the batch variance when early stopping ended
    the fit, so inference-mode predictions were near-constant.

Keras and its backend are imported lazily, on first use, so ``import
models.cnn`` is cheap. The model code uses only ``keras`` and
``keras.ops`` and runs on the TensorFlow (default) and JAX backends; the one
backend-specific piece is :func:`_input_gradient`, used for saliency maps,
which needs automatic differentiation (``tf.GradientTape`` under TensorFlow,
``jax.grad`` under JAX).

CPU threads: unless the environment already sets them, the TensorFlow
thread pools are set to ``LCPIPE_CNN_THREADS`` (default: all cores) for
intra-op work and 1 for inter-op work before TensorFlow is first imported,
and oneDNN kernels are switched on (``TF_ENABLE_ONEDNN_OPTS=1``; TensorFlow
enables them by default on some x86 CPUs only, and on the AMD benchmark
machine they make training epochs 1.3-1.5x and inference ~1.4x faster).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from pipeline.errors import ConfigError, InputError

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_LEARNING_RATE",
    "DmDtCNN",
    "available_architectures",
    "build_network",
    "class_weight_from_name",
    "load_cnn",
    "keras_backend",
    "tensorflow_environment",
]

_MODEL_FILE = "model.keras"
_META_FILE = "model.json"
_FORMAT = "lcpipe-cnn/1"


# --------------------------------------------------------------------------- keras


def tensorflow_environment() -> None:
    """Set lcpipe's TensorFlow CPU defaults in ``os.environ`` unless already set.

    C++ log level 3 (TensorFlow's INFO/WARNING/ERROR lines off: on a machine
    without a GPU it logs a CUDA "error" that means nothing; set
    ``TF_CPP_MIN_LOG_LEVEL=0`` to see them), intra-op threads
    ``LCPIPE_CNN_THREADS`` (default: all cores), inter-op threads 1, oneDNN
    kernels on. TensorFlow reads them once, when it is first imported;
    :func:`_keras` calls this first, and a program (or a test suite) that
    imports TensorFlow itself can call it before doing so.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    threads = os.environ.get("LCPIPE_CNN_THREADS", str(os.cpu_count() or 1))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    # oneDNN convolutions: TensorFlow enables them by default on some x86 CPUs only
    # (not on the AMD benchmark machine), where they make a vgg6 epoch ~1.5x faster
    # (benchmarks/bench_onednn.py)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def _keras() -> Any:
    """Import Keras after :func:`tensorflow_environment` (first call only)."""
    if "keras" not in globals():
        tensorflow_environment()
        with _quiet_native_stderr():
            import keras
            import tensorflow as tf

            tf.constant(1.0) + 1  # runtime start-up logs here, not in the user's output
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") >= "3":
            # "triggered tf.function retracing" warnings (one model per CV fold) are
            # TensorFlow's performance hints, not the user's business
            import logging

            tf.get_logger().setLevel(logging.ERROR)
        globals()["keras"] = keras
    return globals()["keras"]


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the C++ log lines TensorFlow prints while it loads (fd 2 to /dev/null).

    Since TensorFlow 2.19 its start-up lines (a CUDA "error" on a machine without a GPU,
    the oneDNN notice) bypass ``TF_CPP_MIN_LOG_LEVEL``; lcpipe hides them unless
    ``TF_CPP_MIN_LOG_LEVEL`` is set below 3 (``--debug`` sets 0).
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") < "3":
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def keras_backend() -> str:
    """Name of the Keras backend in use (``KERAS_BACKEND``, default 'tensorflow')."""
    return _keras().backend.backend()


# --------------------------------------------------------------------------- networks


def _head(keras: Any, x: Any, n_classes: int) -> Any:
    """Class scores ('logits', used by saliency) followed by the softmax output."""
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.layers.Activation("softmax", name="softmax")(logits)


def _mahabal2017(keras: Any, input_shape: tuple[int, ...], n_classes: int) -> Any:
    L = keras.layers
    inp = keras.Input(shape=input_shape, name="dmdt")
    x = L.Conv2D(16, 5, activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(64, 5, activation="relu", name="conv2")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inp, _head(keras, x, n_classes), name="mahabal2017")


def _vgg6(keras: Any, input_shape: tuple[int, ...], n_classes: int) -> Any:
    L = keras.layers
    inp = keras.Input(shape=input_shape, name="dmdt")
    x = L.Conv2D(16, 3, activation="relu", name="conv1")(inp)
    x = L.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Dropout(0.25, name="drop1")(x)
    x = L.Conv2D(32, 3, activation="relu", name="conv3")(x)
    x = L.Conv2D(32, 3, activation="relu", name="conv4")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    x = L.Dropout(0.25, name="drop2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(256, activation="relu", name="fc1")(x)
    x = L.Dropout(0.5, name="drop3")(x)
    return keras.Model(inp, _head(keras, x, n_classes), name="vgg6")


def _dmdtnet(keras: Any, input_shape: tuple[int, ...], n_classes: int) -> Any:
    L = keras.layers
    inp = keras.Input(shape=input_shape, name="dmdt")
    x = inp
    for i, filters in enumerate((16, 32, 64), start=1):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = L.Activation("relu", name=f"relu{i}")(x)
        x = L.MaxPooling2D(2, name=f"pool{i}")(x)
        x = L.Dropout(0.1 * i, name=f"drop{i}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(128, activation="relu", name="fc1")(x)
    x = L.Dropout(0.4, name="drop_fc")(x)
    return keras.Model(inp, _head(keras, x, n_classes), name="dmdtnet")


#: architecture name -> builder(keras, input_shape, n_classes) -> keras.Model
ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "mahabal2017": _mahabal2017,
    "vgg6": _vgg6,
    "dmdtnet": _dmdtnet,
}

#: default initial Adam learning rate per architecture: Keras' default (1e-3) for the
#: authors' network; 3e-3 for the VGG-style ones, which reach the same cross-validated
#: accuracy in ~20 % fewer epochs (docs/cnn.md)
DEFAULT_LEARNING_RATE: dict[str, float] = {
    "mahabal2017": 1e-3,
    "vgg6": 3e-3,
    "dmdtnet": 3e-3,
}


def available_architectures() -> list[str]:
    """Names accepted by ``DmDtCNN(arch=...)``."""
    return list(ARCHITECTURES)


def build_network(arch: str, input_shape: Sequence[int], n_classes: int) -> Any:
    """Build (uncompiled) Keras model ``arch`` for images of ``input_shape``.

    Parameters
    ----------
    arch : {'mahabal2017', 'vgg6', 'dmdtnet'}
        Architecture name.
    input_shape : tuple of int
        ``(n_dm, n_dt, n_channels)``.
    n_classes : int
        Number of output classes.

    Returns
    -------
    keras.Model
        Functional model whose last two layers are ``logits`` (Dense, linear)
        and ``softmax``.

    Raises
    ------
    ConfigError
        Unknown architecture, or images too small for it.
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown CNN architecture {arch!r}; "
                          f"choose from {', '.join(ARCHITECTURES)}")
    keras = _keras()
    try:
        return ARCHITECTURES[arch](keras, tuple(int(s) for s in input_shape), int(n_classes))
    except ValueError as exc:  # e.g. negative spatial size after 'valid' convolutions
        raise ConfigError(f"architecture {arch!r} cannot take images of shape "
                          f"{tuple(input_shape)}: {exc}") from exc


# --------------------------------------------------------------------------- gradients


def _input_gradient(score_model: Any, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d score[i, target[i]] / d x[i] for a batch, with the backend's autodiff.

    This is the only backend-specific code of the module: ``keras.ops`` has
    no gradient operator, so the derivative is taken with
    ``tf.GradientTape`` (TensorFlow) or ``jax.grad`` over the model's
    ``stateless_call`` (JAX). Since each image only affects its own score,
    the gradient of the summed target scores gives every image's own
    gradient in one pass.
    """
    backend = keras_backend()
    onehot = np.eye(score_model.output_shape[-1], dtype=np.float32)[target]
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            scores = score_model(xt, training=False)
            total = tf.reduce_sum(scores * onehot)
        return np.asarray(tape.gradient(total, xt))
    if backend == "jax":
        import jax

        tv = [v.value for v in score_model.trainable_variables]
        ntv = [v.value for v in score_model.non_trainable_variables]

        def total(xj):
            scores, _ = score_model.stateless_call(tv, ntv, xj, training=False)
            return (scores * onehot).sum()

        return np.asarray(jax.grad(total)(x))
    raise ConfigError(f"saliency maps need the tensorflow or jax Keras backend, not {backend!r}")


# --------------------------------------------------------------------------- estimator


def _check_tensorboard() -> None:
    """Raise :class:`ConfigError` unless the ``tensorboard`` package can be imported."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("TensorBoard logs need the tensorboard package: "
                          "pip install lcpipe[tensorboard]")


def _n_rows(X: Any) -> int:
    """Samples in an input: an array, or a dict of arrays (multi-input networks)."""
    return len(next(iter(X.values()))) if isinstance(X, dict) else len(X)


def _take(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array or of every array of a dict."""
    return {k: v[idx] for k, v in X.items()} if isinstance(X, dict) else X[idx]


def _flat(X: Any) -> np.ndarray:
    """One 2-D float64 array of every input value per sample (for the training hash)."""
    if not isinstance(X, dict):
        return X
    n = _n_rows(X)
    return np.hstack([np.asarray(v, dtype=np.float64).reshape(n, -1)
                      for _, v in sorted(X.items())])


def _check_images(X: Any, what: str = "X") -> np.ndarray:
    """Images as C-contiguous float32 (n, n_dm, n_dt, n_channels); 3-D gets one channel."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {X.dtype}")
    if X.ndim == 3:
        X = X[..., np.newaxis]
    if X.ndim != 4:
        raise ValueError(f"{what} must be dm-dt images of shape (n_objects, n_dm, n_dt[, "
                         f"n_channels]), got an array of shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{what} has no images")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return X


def _validation_split(y: np.ndarray, fraction: float, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation indices; a class keeps at least one training image."""
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = min(int(np.floor(fraction * len(idx) + 0.5)), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def class_weight_from_name(name: str) -> str | None:
    """``DmDtCNN(class_weight=...)`` from the name options and settings use.

    Parameters
    ----------
    name : {'balanced', 'none'}
        ``'none'``: every object counts the same (``None``).

    Returns
    -------
    'balanced' or None

    Raises
    ------
    ConfigError
        Any other name.
    """
    if name not in ("balanced", "none"):
        raise ConfigError(f"class weights must be 'balanced' or 'none', not {name!r}")
    return None if name == "none" else "balanced"


def _class_weights(y: np.ndarray, n_classes: int, cap: float | None) -> np.ndarray:
    """'balanced' weights n / (k n_c), capped at ``cap`` (classes absent: weight 0)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    if cap is not None:
        w = np.minimum(w, cap)
    return w


class DmDtCNN(ClassifierMixin, BaseEstimator):
    """CNN classifier of dm-dt images (scikit-learn API, Keras 3 inside).

    Parameters
    ----------
    arch : {'mahabal2017', 'vgg6', 'dmdtnet'}, default='vgg6'
        Network architecture (see :data:`ARCHITECTURES`).
    epochs : int, default=30
        Maximum number of epochs; training stops earlier when the validation
        loss has not improved for ``patience`` epochs, and the weights of the
        best epoch are restored.
    batch_size : int, default=64
        Training batch size.
    learning_rate : float, optional
        Initial Adam learning rate; default :data:`DEFAULT_LEARNING_RATE` of
        ``arch`` (1e-3 for ``mahabal2017``, 3e-3 for ``vgg6`` and ``dmdtnet``).
    validation_fraction : float, default=0.15
        Fraction of each class held out (stratified) to monitor the loss for
        early stopping and learning-rate reduction. 0 disables both.
    patience : int, default=4
        Early-stopping patience [epochs].
    lr_patience : int, default=2
        Epochs without improvement before the learning rate is multiplied by
        ``lr_factor``.
    lr_factor : float, default=0.5
        Learning-rate reduction factor on plateau.
    class_weight : {'balanced', None}, default=None
        ``'balanced'``: weight classes by ``n / (n_classes * n_c)`` in the loss
        (training and validation), capped at ``max_class_weight``; ``None``: every
        object counts the same. On CRTS (5-fold CV, three seeds) no weights gain
        3.5 points of accuracy on 7 classes and 23 on 16 and give a higher
        macro-F1; the weights buy rare-class recall (docs/cnn.md).
    max_class_weight : float or None, default=10.0
        Cap of the balanced weights: uncapped, a 3-object class gets weight
        ~100 and a 16-class network collapses onto the rare classes.
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy (Szegedy et al. 2016): each
        target becomes ``1 - label_smoothing`` on its class plus
        ``label_smoothing / n_classes`` on every class, in training and in the
        validation loss that early stopping watches. 0 trains on the plain
        labels (sparse cross-entropy).
    inference_batch_size : int, default=512
        Images per batch in ``predict_proba`` and ``saliency``. Larger batches
        push the activations out of the CPU caches (4096 was 10-45 % slower
        on the 2-core benchmark machine without oneDNN; with it, no batch size
        won consistently).
    random_state : int, default=0
        Seed of the validation split, the weight initialisation, dropout and
        shuffling (``keras.utils.set_random_seed``).
    verbose : int, default=0
        Keras ``fit`` verbosity.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    model_ : keras.Model
        The trained network (softmax output).
    input_shape_ : tuple of int
        ``(n_dm, n_dt, n_channels)`` of the training images.
    input_meta_ : dict
        Description of the images the model was trained on (preset, bins
        and edges, normalisation, bands, channels); see ``fit``.
    history_ : pandas.DataFrame
        Training curves: one row per epoch with ``epoch``, ``loss``,
        ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``.
    best_epoch_ : int
        Epoch (1-based) whose weights were kept.
    learning_rate_ : float
        Initial Adam learning rate used (``learning_rate`` or the architecture's
        default).
    class_weight_ : dict
        Class index -> loss weight used.
    training_hash_ : str
        SHA-256 of the training images and labels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((40, 22, 23, 1)).astype("float32")
    >>> X[:20, 5, 5, 0] += 3.0
    >>> y = np.repeat(["a", "b"], 20)
    >>> clf = DmDtCNN(arch="mahabal2017", epochs=2).fit(X, y)  # doctest: +SKIP
    >>> clf.predict_proba(X).shape  # doctest: +SKIP
    (40, 2)
    """

    def __init__(
        self,
        arch: str = "vgg6",
        epochs: int = 30,
        batch_size: int = 64,
        learning_rate: float | None = None,
        validation_fraction: float = 0.15,
        patience: int = 4,
        lr_patience: int = 2,
        lr_factor: float = 0.5,
        class_weight: str | None = None,
        max_class_weight: float | None = 10.0,
        label_smoothing: float = 0.0,
        inference_batch_size: int = 512,
        random_state: int = 0,
        verbose: int = 0,
    ) -> None:
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.class_weight = class_weight
        self.max_class_weight = max_class_weight
        self.label_smoothing = label_smoothing
        self.inference_batch_size = inference_batch_size
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- fit

    def _check_params(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown CNN architecture {self.arch!r}; "
                              f"choose from {', '.join(ARCHITECTURES)}")
        if self.class_weight not in ("balanced", None):
            raise ConfigError(f"class_weight must be 'balanced' or None, "
                              f"not {self.class_weight!r}")
        if not 0.0 <= float(self.validation_fraction) < 1.0:
            raise ConfigError("validation_fraction must be in [0, 1)")
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), not {self.label_smoothing!r}")
        for name in ("epochs", "batch_size", "inference_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.learning_rate is not None and not float(self.learning_rate) > 0:
            raise ConfigError("learning_rate must be > 0 (or None: the architecture's default)")

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        augmentation: Any = None,
        input_meta: dict[str, Any] | None = None,
        tensorboard: str | os.PathLike[str] | None = None,
    ) -> DmDtCNN:
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_objects, n_dm, n_dt[, n_channels])
            dm-dt images (a 3-D array is taken as one channel).
        y : array-like of shape (n_objects,)
            Class labels.
        augmentation : models.evaluation.SampleCopies, optional
            Augmented images (e.g. from random subsets of the light-curve
            points, :func:`models.representations.augmented_inputs`) and the
            row of ``X`` each was made from; a copy inherits that row's label
            and is used for training only if its origin is in the training
            part of the validation split (the validation set holds original
            images only). :func:`models.evaluation.cross_validate` restricts
            it to each fold's training objects.
        input_meta : dict, optional
            What the images are (preset, bins, edges, normalisation, bands);
            saved with the model and checked by :meth:`check_input_meta`.
        tensorboard : path-like, optional
            Folder for TensorBoard logs (``keras.callbacks.TensorBoard`` with
            ``histogram_freq=1``): per-epoch loss, accuracy and learning rate
            under ``train/``, validation loss and accuracy under ``validation/``,
            weight histograms every epoch. Off by default; logging changes nothing
            in the trained weights. A fit argument, not a parameter: it is neither
            part of ``get_params`` nor saved with the model.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            ``tensorboard`` given but the ``tensorboard`` package is not installed.
        """
        import pandas as pd

        self._check_params()
        if tensorboard is not None:
            _check_tensorboard()
        X = self._fit_inputs(X)
        n_rows = _n_rows(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n_rows:
            raise ValueError(f"y must have shape ({n_rows},), got {y.shape}")
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError("need at least two classes to train a classifier")
        aug_X = aug_origin = None
        if augmentation is not None:
            if isinstance(X, dict):
                raise ConfigError("augmentation is for image-only networks")
            aug_X = _check_images(augmentation.X, "augmentation.X")
            aug_origin = np.asarray(augmentation.origin, dtype=np.int64)
            if aug_X.shape[1:] != X.shape[1:] or aug_origin.shape != (len(aug_X),):
                raise ValueError("augmented images must have the image shape of X and one "
                                 "origin index each")
            if len(aug_origin) and (aug_origin.min() < 0 or aug_origin.max() >= len(X)):
                raise ValueError("aug_origin indices out of range")

        keras = _keras()
        seed = int(self.random_state)
        keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)
        n_classes = len(classes)

        if self.validation_fraction > 0:
            tr, va = _validation_split(y_idx, float(self.validation_fraction), rng)
        else:
            tr, va = np.arange(n_rows), np.array([], dtype=np.int64)
        X_tr, y_tr = _take(X, tr), y_idx[tr]
        if aug_X is not None and len(aug_X):
            keep = np.isin(aug_origin, tr)
            X_tr = np.concatenate([X_tr, aug_X[keep]])
            y_tr = np.concatenate([y_tr, y_idx[aug_origin[keep]]])
        # shuffle once with the seed; keras shuffles per epoch (seeded above)
        order = rng.permutation(len(y_tr))
        X_tr, y_tr = _take(X_tr, order), y_tr[order]

        if self.class_weight == "balanced":
            w = _class_weights(y_tr, n_classes, self.max_class_weight)
        else:
            w = np.ones(n_classes)
        sw_tr = w[y_tr].astype(np.float32)

        model = self._network(X, n_classes)
        self.learning_rate_ = float(DEFAULT_LEARNING_RATE[self.arch] if self.learning_rate is None
                                    else self.learning_rate)
        smoothing = float(self.label_smoothing)
        if smoothing > 0:  # one-hot targets: Keras' sparse loss has no smoothing
            loss: Any = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
            metric = "categorical_accuracy"

            def target(idx: np.ndarray) -> np.ndarray:
                return np.eye(n_classes, dtype=np.float32)[idx]
        else:
            loss, metric = "sparse_categorical_crossentropy", "accuracy"

            def target(idx: np.ndarray) -> np.ndarray:
                return idx
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate_),
            loss=loss,
            weighted_metrics=[metric],
        )
        callbacks: list[Any] = []
        fit_kw: dict[str, Any] = {}
        if len(va):
            sw_va = w[y_idx[va]].astype(np.float32)
            fit_kw["validation_data"] = (_take(X, va), target(y_idx[va]), sw_va)
            callbacks += [
                keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(self.patience),
                                              restore_best_weights=True),
                keras.callbacks.ReduceLROnPlateau(monitor="val_loss",
                                                  factor=float(self.lr_factor),
                                                  patience=int(self.lr_patience),
                                                  min_lr=1e-5),
            ]
        if tensorboard is not None:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=os.fspath(tensorboard),
                                                         histogram_freq=1))
        hist = model.fit(
            X_tr, target(y_tr), sample_weight=sw_tr, batch_size=int(self.batch_size),
            epochs=int(self.epochs), shuffle=True, callbacks=callbacks,
            verbose=int(self.verbose), **fit_kw,
        )
        h = {k.replace("categorical_accuracy", "accuracy"): np.asarray(v, dtype=np.float64)
             for k, v in hist.history.items()}
        n_ep = len(next(iter(h.values())))
        frame = pd.DataFrame({"epoch": np.arange(1, n_ep + 1)})
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            frame[key] = h.get(key, np.full(n_ep, np.nan))
        self.history_ = frame
        self.best_epoch_ = (int(np.nanargmin(frame["val_loss"])) + 1 if len(va) else n_ep)

        self.classes_ = classes
        self.model_ = model
        self.input_shape_ = self._shape_of(X)
        self.input_meta_ = dict(input_meta or {})
        self.class_weight_ = {int(i): float(w[i]) for i in range(n_classes)}
        self.n_train_ = int(len(tr))
        self.n_augmented_ = int(len(X_tr) - len(tr))
        from pipeline.hashing import data_hash

        self.training_hash_ = data_hash(_flat(X), y)
        return self

    # ------------------------------------------------ inputs (overridden by the hybrid)

    def _fit_inputs(self, X: Any) -> Any:
        """Training input, checked (images: float32 (n, n_dm, n_dt, n_channels))."""
        return _check_images(X)

    def _network(self, X: Any, n_classes: int) -> Any:
        """The untrained Keras model for training input ``X``."""
        return build_network(self.arch, X.shape[1:], n_classes)

    @staticmethod
    def _shape_of(X: Any) -> Any:
        return tuple(int(s) for s in X.shape[1:])

    def _extra_meta(self) -> dict[str, Any]:
        """More of the fitted state for ``model.json`` (read back by ``_load_extra``)."""
        return {}

    def _load_extra(self, meta: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_meta` saved."""

    # ----------------------------------------------------------------- predict

    def _check_predict_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = _check_images(X)
        if X.shape[1:] != self.input_shape_:
            raise InputError("<images>", f"dm-dt images of shape {X.shape[1:]} given to a model "
                             f"trained on shape {self.input_shape_} (different bins, bands or "
                             f"representation?)")
        return X

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_objects, n_classes), columns in ``classes_`` order.

        Inference runs in batches of ``inference_batch_size`` images.
        """
        X = self._check_predict_X(X)
        out = self.model_.predict(X, batch_size=int(self.inference_batch_size), verbose=0)
        return np.asarray(out, dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of each image, shape (n_objects,)."""
        check_is_fitted(self, "model_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _target_index(self, X: np.ndarray, target: Any) -> np.ndarray:
        """Class index per image: of ``target`` (class labels), or the predicted class."""
        if target is None:
            return np.argmax(self.predict_proba(X), axis=1)
        target = np.asarray(target)
        if target.shape != (len(X),):
            raise ValueError(f"target must have shape ({len(X)},)")
        t_idx = np.searchsorted(self.classes_, target)
        bad = (t_idx >= len(self.classes_)) | (
            self.classes_[np.minimum(t_idx, len(self.classes_) - 1)] != target)
        if bad.any():
            raise ValueError(f"unknown target class {str(target[bad][0])!r}")
        return t_idx

    def saliency(self, X: Any, target: Any = None) -> np.ndarray:
        """Saliency maps: |d(class score) / d(image)| (Simonyan et al. 2014).

        The class score is the network's pre-softmax output (layer
        ``logits``) for the target class.

        Parameters
        ----------
        X : array-like of shape (n_objects, n_dm, n_dt[, n_channels])
            Images.
        target : array-like of shape (n_objects,), optional
            Class label (one of ``classes_``) whose score is differentiated for
            each image; default the predicted class.

        Returns
        -------
        ndarray of shape (n_objects, n_dm, n_dt, n_channels)
            Absolute gradient, in score units per unit of the input image.
        """
        X = self._check_predict_X(X)
        t_idx = self._target_index(X, target)
        keras = _keras()
        score_model = keras.Model(self.model_.inputs, self.model_.get_layer("logits").output)
        out = np.empty_like(X)
        bs = int(self.inference_batch_size)
        for a in range(0, len(X), bs):
            out[a:a + bs] = _input_gradient(score_model, X[a:a + bs], t_idx[a:a + bs])
        return np.abs(out)

    def grad_cam(self, X: Any, target: Any = None) -> np.ndarray:
        """Class activation maps of the last convolution (Grad-CAM family).

        lcpipe's networks flatten their last convolution into dense layers, where
        Grad-CAM's channel weights (gradients averaged over positions; Selvaraju et al.
        2017) mix every position's evidence and can cancel it. The map is therefore
        HiResCAM (Draelos & Carin 2020): ReLU(sum_k dS/dA_k(h, w) * A_k(h, w)), the
        contribution of each position of the last convolution's output A to the class
        score S (exact for a linear head), resized bilinearly to the input's dm-dt
        grid and divided by its maximum.

        Parameters
        ----------
        X : array-like of shape (n_objects, n_dm, n_dt[, n_channels])
        target : array-like of shape (n_objects,), optional
            Class per image; default the predicted class.

        Returns
        -------
        ndarray of shape (n_objects, n_dm, n_dt)
            In [0, 1] (all zero where no position raises the class score).
        """
        X = self._check_predict_X(X)
        t_idx = self._target_index(X, target)
        if keras_backend() != "tensorflow":
            raise ConfigError(f"Grad-CAM needs the tensorflow Keras backend, not "
                              f"{keras_backend()!r}")
        import tensorflow as tf

        keras = _keras()
        convs = [layer for layer in self.model_.layers
                 if isinstance(layer, keras.layers.Conv2D)]
        if not convs:
            raise ConfigError("Grad-CAM needs a network with a convolution layer")
        model = keras.Model(self.model_.inputs,
                            [convs[-1].output, self.model_.get_layer("logits").output])
        onehot = np.eye(len(self.classes_), dtype=np.float32)
        out = np.empty(X.shape[:3], dtype=np.float64)
        bs = int(self.inference_batch_size)
        for a in range(0, len(X), bs):
            xb = tf.convert_to_tensor(X[a:a + bs])
            with tf.GradientTape() as tape:
                act, scores = model(xb, training=False)
                total = tf.reduce_sum(scores * onehot[t_idx[a:a + bs]])
            grad = tape.gradient(total, act)
            cam = tf.nn.relu(tf.reduce_sum(grad * act, axis=-1, keepdims=True))
            cam = tf.image.resize(cam, X.shape[1:3], method="bilinear")[..., 0].numpy()
            peak = cam.max(axis=(1, 2), keepdims=True)
            out[a:a + bs] = np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0.0)
        return out

    # ----------------------------------------------------------------- metadata

    def check_input_meta(self, meta: dict[str, Any], source: object = "<images>") -> None:
        """Raise :class:`InputError` unless ``meta`` describes images like the training ones.

        Compared: preset name, normalisation, band order, channels, and the dm
        and dt edges (to 1e-9 relative). Keys absent on either side are not
        compared.
        """
        check_is_fitted(self, "model_")
        mine = self.input_meta_
        for key in ("preset", "norm", "bands", "channels"):
            if key in mine and key in meta and list(np.atleast_1d(mine[key])) != list(
                    np.atleast_1d(meta[key])):
                raise InputError(source, f"dm-dt images have {key} {meta[key]!r} but the model "
                                 f"was trained on {key} {mine[key]!r}; recompute them with the "
                                 f"model's settings")
        for key in ("dm_edges", "dt_edges"):
            if key in mine and key in meta:
                a, b = np.asarray(mine[key], float), np.asarray(meta[key], float)
                if a.shape != b.shape or not np.allclose(a, b, rtol=1e-9, atol=0):
                    raise InputError(source, f"dm-dt images use other {key.replace('_', ' ')} "
                                     f"({len(b) - 1} bins) than the model was trained on "
                                     f"({len(a) - 1} bins, preset "
                                     f"{mine.get('bins', mine.get('preset', '?'))!r})")

    # ----------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.keras`` and ``model.json`` (metadata) into ``directory``.

        The folder is written beside its final name and put in place in one step: a
        save killed at any moment leaves the previous model (or none), never new
        weights with old metadata. An existing ``directory`` is replaced only if it
        is empty or an lcpipe CNN model folder. The JSON holds the format tag, the
        weights' SHA-256, classes, constructor parameters, input shape and
        ``input_meta_``, lcpipe and Keras versions, backend, and the training-data hash.

        Returns
        -------
        Path
            The directory.
        """
        from pipeline._version import __version__
        from pipeline.hashing import file_hash
        from pipeline.io import atomic_dir, write_json_atomic

        check_is_fitted(self, "model_")
        keras = _keras()
        d = Path(directory)
        with atomic_dir(d, replaceable=_foreign_files) as tmp:
            self.model_.save(tmp / _MODEL_FILE)
            meta = {
                # ties the metadata to these weights: files mixed from two saves are
                # refused by load_cnn
                "model_sha256": file_hash(tmp / _MODEL_FILE),
                "format": _FORMAT,
                "classes": [str(c) for c in self.classes_],
                "params": self.get_params(),
                "input_shape": (dict(self.input_shape_) if isinstance(self.input_shape_, dict)
                                else list(self.input_shape_)),
                "input_meta": self.input_meta_,
                "class_weight": self.class_weight_,
                "best_epoch": self.best_epoch_,
                "learning_rate": self.learning_rate_,
                "n_train": self.n_train_,
                "n_augmented": self.n_augmented_,
                "training_hash": self.training_hash_,
                "lcpipe_version": __version__,
                "keras_version": keras.__version__,
                "backend": keras_backend(),
                "estimator": type(self).__name__,
                **self._extra_meta(),
            }
            write_json_atomic(meta, tmp / _META_FILE)
        return d


#: estimator classes a model folder may name (``model.json`` ``estimator``); the hybrid
#: network of :mod:`models.hybrid` registers itself here
ESTIMATORS: dict[str, type] = {"DmDtCNN": DmDtCNN}
#: estimators of other modules, imported by :func:`load_cnn` when a folder names them
_ESTIMATOR_MODULES: dict[str, str] = {"HybridCNN": "models.hybrid"}

#: what a CNN model folder holds (the training curves are written beside the model)
_FOLDER_FILES = {_MODEL_FILE, _META_FILE, "training_curves.parquet", "training_curves.png"}


def _foreign_files(d: Path) -> str | None:
    """Why folder ``d`` may not be replaced by a model folder (None: it may)."""
    other = sorted(p.name for p in d.iterdir()
                   if p.name not in _FOLDER_FILES and not p.name.startswith("."))
    if not other:
        return None
    shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
    return (f"holds files that are not part of an lcpipe CNN model ({shown}); a model is "
            "written as a folder of its own: choose a new or empty folder")


def load_cnn(directory: str | os.PathLike[str]) -> DmDtCNN:
    """Load a model saved by :meth:`DmDtCNN.save` (Keras ``safe_mode=True``).

    Parameters
    ----------
    directory : path-like
        Folder with ``model.keras`` and ``model.json``.

    Returns
    -------
    DmDtCNN
        Fitted estimator (without ``history_``).

    Raises
    ------
    InputError
        Missing or unreadable files, or not an lcpipe CNN model.
    """
    d = Path(directory)
    meta_path, model_path = d / _META_FILE, d / _MODEL_FILE
    for p in (meta_path, model_path):
        if not p.is_file():
            raise InputError(d, f"not an lcpipe CNN model folder: {p.name} missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(meta_path, f"cannot read model metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise InputError(meta_path, f"unknown model format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r} "
                         f"(expected {_FORMAT!r})")
    missing = [k for k in ("classes", "params", "input_shape") if k not in meta]
    if missing:
        raise InputError(meta_path, f"model metadata lacks {', '.join(missing)}")
    classes = meta["classes"]
    if (not isinstance(classes, list) or not classes
            or len({str(c) for c in classes}) != len(classes)):
        raise InputError(meta_path, "model metadata: 'classes' must be a list of distinct "
                         "class names")
    if "model_sha256" in meta:
        from pipeline.hashing import file_hash

        if file_hash(model_path) != meta["model_sha256"]:
            raise InputError(d, f"{_MODEL_FILE} is not the network {_META_FILE} describes "
                             "(an interrupted save, or files mixed from two models): "
                             "retrain, or restore the folder")
    kind = meta.get("estimator", "DmDtCNN")
    if kind not in ESTIMATORS and kind in _ESTIMATOR_MODULES:  # registers itself when imported
        importlib.import_module(_ESTIMATOR_MODULES[kind])
    if kind not in ESTIMATORS:
        known = sorted({*ESTIMATORS, *_ESTIMATOR_MODULES})
        raise InputError(meta_path, f"unknown estimator {kind!r} in model metadata "
                         f"(expected one of {', '.join(known)})")
    try:
        est = ESTIMATORS[kind](**meta["params"])
    except TypeError as exc:
        raise InputError(meta_path, f"model metadata has unknown parameters: {exc}") from exc
    keras = _keras()
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for corrupt archives
        text = str(exc)
        why = ("it asks to run code when loaded (refused: lcpipe loads plain models only)"
               if "safe_mode" in text or "unsafe" in text.lower() else
               text.strip().splitlines()[0].rstrip()[:200] if text.strip() else type(exc).__name__)
        raise InputError(model_path, f"cannot load the Keras model: {why}") from exc
    n_out = int(model.output_shape[-1])
    if n_out != len(classes):
        raise InputError(meta_path, f"the network has {n_out} outputs but the metadata "
                         f"names {len(classes)} classes")
    est.classes_ = np.asarray(classes)
    est.model_ = model
    est.input_shape_ = tuple(meta["input_shape"])
    est.input_meta_ = meta.get("input_meta", {})
    est.class_weight_ = {int(k): v for k, v in meta.get("class_weight", {}).items()}
    est.best_epoch_ = meta.get("best_epoch")
    est.learning_rate_ = meta.get("learning_rate")
    est.n_train_ = meta.get("n_train")
    est.n_augmented_ = meta.get("n_augmented")
    est.training_hash_ = meta.get("training_hash")
    est._load_extra(meta)
    return est
