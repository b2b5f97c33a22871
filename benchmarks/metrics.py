"""Task metrics (scikit-learn) and fidelity of outputs against a reference."""
from __future__ import annotations

import numpy as np


def fidelity(actual: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float | None]:
    """Max/mean absolute error over all outputs, cosine per sample, top-1 agreement on a (N, classes) first output.

    The cosine is the mean over samples of each sample's outputs (all outputs, flattened) against the
    reference's. One cosine of everything concatenated weighs each sample by the size of its outputs:
    on a trained classifier whose logits' norm varies 5x between samples (the zoo's EfficientNetB0),
    three of 100 samples set it at 0.94 while the per-sample cosines had a median of 0.9989, every
    top-1 agreed, and accuracy on 300 held-out images was unchanged.
    """
    a = np.concatenate([x.reshape(-1) for x in actual]).astype(np.float64)
    r = np.concatenate([x.reshape(-1) for x in reference]).astype(np.float64)
    error = np.abs(a - r)
    top1 = None
    if reference[0].ndim == 2 and reference[0].shape[1] > 1:
        top1 = float(np.mean(actual[0].argmax(axis=1) == reference[0].argmax(axis=1)))
    return {"max_abs_error": float(error.max()), "mean_abs_error": float(error.mean()),
            "cosine": _mean_sample_cosine(actual, reference), "top1_agreement": top1}


def _mean_sample_cosine(actual: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Mean of per-sample cosines. Outputs without a common leading (sample) dimension, or with one
    value per sample (a regression's cosine per sample would be only its sign), count as one sample."""
    samples = {x.shape[0] if x.ndim else None for x in (*actual, *reference)}
    n = samples.pop() if len(samples) == 1 else None
    if not n or sum(x.size for x in reference) < 2 * n:
        return _cosine(np.concatenate([x.reshape(-1) for x in actual]), np.concatenate([x.reshape(-1) for x in reference]))
    a = np.concatenate([x.reshape(n, -1) for x in actual], axis=1).astype(np.float64)
    r = np.concatenate([x.reshape(n, -1) for x in reference], axis=1).astype(np.float64)
    return float(np.mean([_cosine(a[i], r[i]) for i in range(n)]))


def _cosine(a: np.ndarray, r: np.ndarray) -> float:
    a, r = a.astype(np.float64), r.astype(np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(r)
    return float(np.dot(a, r) / norm) if norm else (1.0 if np.array_equal(a, r) else 0.0)


def task_metrics(output: np.ndarray, labels: np.ndarray) -> tuple[dict[str, float], list[list[int]] | None]:
    """Classification metrics for (N, classes) scores with integer labels; MAE/RMSE otherwise."""
    from sklearn import metrics

    labels = np.asarray(labels)
    if labels.dtype.kind in "iub" and output.ndim == 2 and output.shape[1] > 1:
        predicted = output.argmax(axis=1)
        classes = list(range(output.shape[1]))
        average = "binary" if output.shape[1] == 2 else "macro"
        result = {
            "accuracy": metrics.accuracy_score(labels, predicted),
            "precision": metrics.precision_score(labels, predicted, average=average, zero_division=0),
            "recall": metrics.recall_score(labels, predicted, average=average, zero_division=0),
            "f1": metrics.f1_score(labels, predicted, average=average, zero_division=0),
        }
        auc = _roc_auc(output, labels, classes)
        if auc is not None:
            result["roc_auc"] = auc
        matrix = metrics.confusion_matrix(labels, predicted, labels=classes).tolist()
        return {k: float(v) for k, v in result.items()}, matrix
    flat = output.reshape(len(labels), -1).squeeze(-1) if output.size == labels.size else output.reshape(labels.shape)
    return {
        "mae": float(metrics.mean_absolute_error(labels, flat)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(labels, flat))),
    }, None


def _roc_auc(scores: np.ndarray, labels: np.ndarray, classes: list[int]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < len(classes):
        return None  # one-vs-rest AUC is undefined when a class never occurs
    probabilities = scores
    if not np.allclose(scores.sum(axis=1), 1.0, atol=1e-3) or scores.min() < 0:
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))  # logits -> probabilities
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    if len(classes) == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", labels=classes))
