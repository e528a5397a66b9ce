# Copyright 2025 The TER authors. Licensed under the Apache License, Version 2.0.
"""Trusted F1: trusted precision, recall, F1 and accuracy at a trusted threshold, with AURC, AUGRC and ECE."""

import datasets
import evaluate

from .trusted_metrics import check_class_ids, confidences_from_probabilities, trusted_scores

_DESCRIPTION = """\
Trusted metrics score a classifier that gives each prediction a confidence c in [0, 1]. A prediction is trusted
when c >= τ, the trusted threshold: T(τ) = {i : c_i >= τ}; it is correct when prediction = reference: R.

- trusted precision TP = |T ∩ R| / |T| (accuracy among trusted predictions)
- trusted recall TR = |T ∩ R| / |R| (share of correct predictions that are trusted)
- trusted F1 = 2·TP·TR / (TP + TR)
- trusted accuracy TA = (|T ∩ R| + |not T ∩ not R|) / N (how often the trust decision is right)
- coverage = |T| / N

τ is given, or chosen on the data: "max_f1" (largest trusted F1, ties -> larger τ), "break_even" (first τ going
up where TP >= TR) or "target_precision" (smallest τ with TP >= target). Also returned: accuracy, macro-F1,
unweighted average recall (uar), AURC, AUGRC and ECE (15 equal-width bins, top label). These definitions are a
reconstruction for TER (Xue et al., arXiv 2508.07625), whose paper gives no formulas; trusting everything gives
trusted F1 = 2·Acc/(1 + Acc), which reproduces the paper's Music-video numbers (Acc 0.8240 -> 0.9035).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids, shape (N,).
    references (`list` of `int`): true class ids, shape (N,).
    confidences (`list` of `float`): confidence of each prediction in [0, 1], shape (N,) (default config).
    probabilities (`list` of `list` of `float`): per-class probabilities, shape (N, K), rows summing to 1 within
        1e-3, instead of `confidences` (config "probabilities"); confidence = max probability, each prediction
        must be an arg-max of its row, and K sets `num_classes`.
    threshold (`str` or `float`, defaults to "max_f1"): τ in [0, 1], or "max_f1", "break_even" or
        "target_precision" to choose it on these data.
    target_precision (`float`, defaults to 0.95): target of "target_precision". If no τ reaches it, the τ with
        the highest trusted precision is used.
    zero_division (`float`, defaults to 0.0): value of a ratio whose denominator is 0 (empty T or R, a class
        never seen): 0.0, 1.0 or nan, as in scikit-learn.
    num_classes (`int`, *optional*): classes 0..K-1 for macro_f1 and uar; default: the classes seen.
    return_curve (`bool`, defaults to False): also return the threshold sweep.
Returns:
    trusted_precision (`float`): |T ∩ R| / |T| at the threshold.
    trusted_recall (`float`): |T ∩ R| / |R| at the threshold.
    trusted_f1 (`float`): harmonic mean of trusted precision and recall.
    trusted_accuracy (`float`): share of samples whose trust decision is right.
    threshold (`float`): the τ used.
    coverage (`float`): |T| / N.
    accuracy (`float`): share of correct predictions.
    macro_f1 (`float`): unweighted mean of per-class F1.
    uar (`float`): unweighted average recall (macro recall).
    aurc (`float`): area under the selective-risk-coverage curve (lower is better).
    augrc (`float`): area under the generalized-risk-coverage curve (lower is better).
    ece (`float`): expected calibration error, 15 equal-width bins.
    n (`int`): number of samples.
    curve (`dict` of `list`): only with return_curve=True: thresholds (the distinct confidences, ascending) and
        trusted_precision, trusted_recall, trusted_f1, trusted_accuracy and coverage at each.
Examples:
    The two wrong predictions have the lowest confidences, so τ = 0.7 separates them:

    >>> import evaluate
    >>> trusted_f1 = evaluate.load("trusted_f1")
    >>> results = trusted_f1.compute(predictions=[0, 1, 1, 2, 0, 2], references=[0, 1, 2, 2, 0, 1],
    ...                              confidences=[0.9, 0.8, 0.3, 0.7, 0.95, 0.4])
    >>> print({key: round(results[key], 4) for key in ("trusted_precision", "trusted_recall", "threshold", "coverage")})
    {'trusted_precision': 1.0, 'trusted_recall': 1.0, 'threshold': 0.7, 'coverage': 0.6667}
    >>> print({key: round(results[key], 4) for key in ("accuracy", "macro_f1", "aurc", "augrc", "ece")})
    {'accuracy': 0.6667, 'macro_f1': 0.6667, 'aurc': 0.0889, 'augrc': 0.0556, 'ece': 0.225}

    A fixed threshold, e.g. one calibrated on validation data:

    >>> results = trusted_f1.compute(predictions=[0, 1, 1, 2, 0, 2], references=[0, 1, 2, 2, 0, 1],
    ...                              confidences=[0.9, 0.8, 0.3, 0.7, 0.95, 0.4], threshold=0.85)
    >>> print(round(results["trusted_precision"], 4), round(results["trusted_recall"], 4), results["coverage"])
    1.0 0.5 0.3333333333333333

    Per-class probabilities instead of confidences:

    >>> trusted_f1 = evaluate.load("trusted_f1", "probabilities")
    >>> results = trusted_f1.compute(predictions=[0, 1, 1], references=[0, 1, 0],
    ...                              probabilities=[[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], threshold="break_even")
    >>> print(results["threshold"], round(results["trusted_f1"], 4), round(results["accuracy"], 4))
    0.8 1.0 0.6667
"""

_CITATION = """\
@article{xue2025trustworthy,
  title   = {A Trustworthy Method for Multimodal Emotion Recognition},
  author  = {Xue and Liu and Wang and Wu and Wu},
  journal = {Big Data Mining and Analytics},
  year    = {2025},
  doi     = {10.26599/BDMA.2025.9020050},
  eprint  = {2508.07625},
  archivePrefix = {arXiv}
}
@inproceedings{han2021trusted,
  title     = {Trusted Multi-View Classification},
  author    = {Han, Zongbo and Zhang, Changqing and Fu, Huazhu and Zhou, Joey Tianyi},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021}
}
@inproceedings{sensoy2018evidential,
  title     = {Evidential Deep Learning to Quantify Classification Uncertainty},
  author    = {Sensoy, Murat and Kaplan, Lance and Kandemir, Melih},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2018}
}
@inproceedings{geifman2017selective,
  title     = {Selective Classification for Deep Neural Networks},
  author    = {Geifman, Yonatan and El-Yaniv, Ran},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2017}
}
@inproceedings{traub2024overcoming,
  title     = {Overcoming Common Flaws in the Evaluation of Selective Classification Systems},
  author    = {Traub, Jeremias and Bungert, Till J. and L{\\"u}th, Carsten T. and Baumgartner, Michael and
               Maier-Hein, Klaus H. and Maier-Hein, Lena and Jaeger, Paul F.},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024}
}
@inproceedings{guo2017calibration,
  title     = {On Calibration of Modern Neural Networks},
  author    = {Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2017}
}
"""

_LABEL = datasets.Value("int64")
_FEATURES = {
    "default": datasets.Features(
        {"predictions": _LABEL, "references": _LABEL, "confidences": datasets.Value("float64")}
    ),
    "probabilities": datasets.Features(
        {"predictions": _LABEL, "references": _LABEL, "probabilities": datasets.Sequence(datasets.Value("float64"))}
    ),
}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TrustedF1(evaluate.Metric):
    """Trusted precision / recall / F1 / accuracy at a trusted threshold, plus AURC, AUGRC and ECE."""

    def _info(self):
        if self.config_name not in _FEATURES:
            raise ValueError(f"Unknown config {self.config_name!r} for trusted_f1; use one of {sorted(_FEATURES)}.")
        features = _FEATURES[self.config_name]
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
            # Arrow columns reach _compute without a copy and keep float64 ("numpy" would cast to float32);
            # evaluate allows a format only when every feature is a Value, so not for probabilities.
            format="arrow" if self.config_name == "default" else None,
            reference_urls=["https://arxiv.org/abs/2508.07625", "https://openreview.net/forum?id=OOsR8BzCnl5"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of samples (see `evaluate.Metric.add_batch`); predictions and references must be ints."""
        # Arrow silently truncates a Python float such as 0.5 to the int64 feature: refuse non-integers first.
        _check_class_ids(predictions=predictions, references=references)
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one sample (see `evaluate.Metric.add`); prediction and reference must be ints."""
        _check_class_ids(prediction=prediction, reference=reference)
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(
        self,
        predictions,
        references,
        confidences=None,
        probabilities=None,
        threshold="max_f1",
        target_precision=0.95,
        zero_division=0.0,
        num_classes=None,
        return_curve=False,
    ):
        if probabilities is not None:
            confidences = confidences_from_probabilities(probabilities, predictions)
            num_classes = _num_classes_of(len(probabilities[0]), num_classes)
        return trusted_scores(
            predictions,
            references,
            confidences,
            threshold=threshold,
            target_precision=target_precision,
            zero_division=zero_division,
            num_classes=num_classes,
            return_curve=return_curve,
        )


def _check_class_ids(**inputs):
    for name, values in inputs.items():
        if values is not None:
            check_class_ids(values, name)


def _num_classes_of(width, num_classes):
    """K = the number of probability columns; a given `num_classes` must agree."""
    if num_classes is not None and num_classes != width:
        raise ValueError(f"`num_classes` ({num_classes}) differs from the number of probability columns ({width}).")
    return width
