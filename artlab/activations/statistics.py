"""Two-sample measures: how far apart two clouds of feature vectors are, and how sure that is.

The Fréchet distance (the FID formula), KID (unbiased polynomial-kernel MMD²), an
RBF-kernel MMD² with a permutation test, the accuracy of a linear probe, and two
intervals: a percentile bootstrap (KID, MMD, probe) and a bias-corrected half-sample
interval for the Fréchet distance, whose small-sample bias the bootstrap magnifies.
Inputs are n×d matrices (rows = images).

Small samples are the normal case here (tens of images against 64-512 channels):
when n ≤ dim a covariance is singular, so the Fréchet distance switches to a
Ledoit-Wolf shrinkage covariance; KID and the MMD test are unbiased and remain valid at
small n. All randomness (bootstrap, permutations, CV folds) comes from ``seed`` via
numpy Generators: same seed, same numbers. :func:`reading_note` says in plain words what
a negative KID/MMD² or a below-chance probe means.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "MEASURES",
    "MIN_PER_SET",
    "MIN_PER_HALF_SAMPLE",
    "SmallSampleWarning",
    "frechet_distance",
    "kid",
    "mmd_test",
    "probe_accuracy",
    "bootstrap_ci",
    "half_sample_ci",
    "reading_note",
    "NEGATIVE_MEANS",
    "BELOW_CHANCE_MEANS",
    "standardise_jointly",
    "measure_rows",
]

#: The set-to-set measures :func:`~artlab.activations.domain_shift` knows, in table order.
MEASURES = ("frechet", "kid", "mmd", "probe")
#: The fewest rows per set a measure accepts.
MIN_PER_SET = 2
#: The fewest rows per set :func:`half_sample_ci` needs (halves of at least 2 rows).
MIN_PER_HALF_SAMPLE = 4


class SmallSampleWarning(UserWarning):
    """Fewer images than feature dimensions: covariances are singular, estimates noisy."""


def _single_threaded_blas():
    """A context running BLAS on one thread (or nothing, without threadpoolctl).

    The statistics use many small matrices (≤ a few hundred wide); with several BLAS
    threads on a busy 2-core machine they ran 6× slower than on one (measured here).
    """
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


_blas_state = threading.local()


def _one_blas_thread(fn):
    """Run ``fn`` with :func:`_single_threaded_blas` (many small matrices: one thread is faster).

    Calls from inside another such function skip the switch: it is set already, and setting
    it costs about 0.6 ms, ten times a small Fréchet distance (a resampling loop makes hundreds).
    """
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if getattr(_blas_state, "limited", False):
            return fn(*args, **kwargs)
        _blas_state.limited = True
        try:
            with _single_threaded_blas():
                return fn(*args, **kwargs)
        finally:
            _blas_state.limited = False

    return wrapper


def _matrix(x: Any, name: str) -> np.ndarray:
    """A float64 n×d numpy array from a tensor or array (rows = images)."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of pooled features (images × dims), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _pair(a: Any, b: Any, minimum: int = MIN_PER_SET) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b have different feature dimensions ({a.shape[1]} vs {b.shape[1]}); use one layer")
    for name, x in (("a", a), ("b", b)):
        if len(x) < minimum:
            raise ValueError(f"{name} has {len(x)} rows; this measure needs at least {minimum} per set")
    return a, b


@dataclass(frozen=True)
class _Covariance:
    """A covariance kept as alpha·I + U Uᵀ (U: d×k), so n ≪ d never needs a d×d eigensolve."""

    alpha: float
    u: np.ndarray

    def trace(self) -> float:
        return self.alpha * len(self.u) + float((self.u**2).sum())

    def full(self) -> np.ndarray:
        return self.alpha * np.eye(len(self.u)) + self.u @ self.u.T


def _covariance(x: np.ndarray, method: str | float) -> _Covariance:
    """Sample covariance (ddof=1), Ledoit-Wolf, or shrunk toward tr(Σ)/d · I by a fixed amount."""
    n, d = x.shape
    xc = x - x.mean(0)
    if method == "ledoit-wolf":
        from sklearn.covariance import ledoit_wolf_shrinkage

        # sklearn's LedoitWolf: (1 − s)·S + s·tr(S)/d·I with S the maximum-likelihood (ddof=0) covariance.
        s = float(ledoit_wolf_shrinkage(x)) if d > 1 else 0.0
        return _Covariance(s * float((xc**2).sum()) / (n * d), math.sqrt((1 - s) / n) * xc.T)
    s = 0.0 if method == "empirical" else float(method)
    return _Covariance(s * float((xc**2).sum()) / ((n - 1) * d), math.sqrt((1 - s) / (n - 1)) * xc.T)


def _shrinkage_method(shrinkage: Any, n: int, d: int) -> str | float:
    """The covariance estimator a ``shrinkage`` argument stands for, given n and d."""
    if shrinkage == "auto":
        # A sample covariance of n points has rank ≤ n − 1, singular when n ≤ d.
        return "ledoit-wolf" if n <= d else "empirical"
    if shrinkage is None or shrinkage == "empirical":
        return "empirical"
    if shrinkage == "ledoit-wolf":
        return shrinkage
    if isinstance(shrinkage, (int, float)) and not isinstance(shrinkage, bool) and 0 <= shrinkage <= 1:
        return float(shrinkage)
    raise ValueError(
        f"shrinkage must be 'auto', 'ledoit-wolf', None (or 'empirical') or a number in [0, 1], got {shrinkage!r}"
    )


def _sym_trace_sqrt(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr √(S1 S2) for symmetric PSD S1, S2.

    The reference FID code takes scipy.linalg.sqrtm(S1 @ S2) and drops imaginary parts.
    Here the same trace comes from the symmetric matrix √S1 S2 √S1 (similar to S1 S2, so it
    has the same eigenvalues), whose eigenvalues are real and ≥ 0: no complex round-off.
    """
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ s2 @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def _trace_sqrt_product(ca: _Covariance, cb: _Covariance) -> float:
    """tr √(Σa Σb), exactly, in the span of the two sets' centred data when that is smaller than d.

    Both Σ = αI + U Uᵀ map the span Q of [Ua, Ub] (k = na + nb columns) into itself and act
    as αa·αb on its orthogonal complement, so the eigenvalues of Σa Σb are those of the
    k×k restrictions' product plus (d − k) copies of αa·αb.
    """
    d, k = len(ca.u), ca.u.shape[1] + cb.u.shape[1]
    if k >= d:
        return _sym_trace_sqrt(ca.full(), cb.full())
    q, _ = np.linalg.qr(np.hstack([ca.u, cb.u]))
    ua, ub = q.T @ ca.u, q.T @ cb.u
    inner = _sym_trace_sqrt(ca.alpha * np.eye(k) + ua @ ua.T, cb.alpha * np.eye(k) + ub @ ub.T)
    return inner + (d - k) * math.sqrt(max(ca.alpha * cb.alpha, 0.0))


@_one_blas_thread
def frechet_distance(a: Any, b: Any, *, shrinkage: str | float | None = "auto") -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors (the FID formula).

    ‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½). ``shrinkage``: ``"auto"`` uses Ledoit-Wolf
    covariances when a set has n ≤ dim rows (the sample covariance would be singular),
    else the sample covariance; ``"ledoit-wolf"`` always, ``None`` never; a number s in
    [0, 1] shrinks each covariance toward tr(Σ)/d · I by s. Shrinkage trades variance for
    a bias that depends on n, so compare distances computed with equal set sizes.
    """
    a, b = _pair(a, b)
    method = _shrinkage_method(shrinkage, min(len(a), len(b)), a.shape[1])
    ca, cb = _covariance(a, method), _covariance(b, method)
    diff = a.mean(0) - b.mean(0)
    value = diff @ diff + ca.trace() + cb.trace() - 2 * _trace_sqrt_product(ca, cb)
    return max(float(value), 0.0)  # ≥ 0 in exact arithmetic; clip round-off


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, coef0: float) -> np.ndarray:
    return (x @ y.T / x.shape[1] + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD² from kernel blocks: within-set means exclude the diagonal (i = j) terms."""
    m, n = len(kxx), len(kyy)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kid(a: Any, b: Any, *, degree: int = 3, coef0: float = 1.0) -> float:
    """Kernel Inception Distance: unbiased MMD² with k(x, y) = (x·y/d + coef0)^degree.

    Unbiased at any n ≥ 2 (its expectation is 0 when both sets come from one
    distribution, so small negative values happen). Bińkowski et al. (2018) average it
    over random subsets of 1000; with the tens of images used here the whole sets are used.
    """
    a, b = _pair(a, b)
    return _mmd2_unbiased(_poly_kernel(a, a, degree, coef0), _poly_kernel(b, b, degree, coef0),
                          _poly_kernel(a, b, degree, coef0))


def _rbf_gram(z: np.ndarray) -> np.ndarray:
    """RBF kernel matrix exp(−‖x−y‖² / 2σ²) with σ² the median squared pairwise distance."""
    sq = (z**2).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0, None)
    off = d2[np.triu_indices(len(z), k=1)]
    positive = off[off > 0]
    sigma2 = float(np.median(positive)) if len(positive) else 1.0
    return np.exp(-d2 / (2 * sigma2))


def _kernel_matrix(a: np.ndarray, b: np.ndarray, kernel: str, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    z = np.vstack([a, b])
    if kernel == "rbf":
        return _rbf_gram(z)
    if kernel in ("poly", "polynomial", "kid"):
        return _poly_kernel(z, z, degree, coef0)
    raise ValueError(f"unknown kernel {kernel!r}; choose 'rbf' or 'poly'")


def _mmd2_from_gram(k: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> float:
    return _mmd2_unbiased(k[np.ix_(ia, ia)], k[np.ix_(ib, ib)], k[np.ix_(ia, ib)])


@_one_blas_thread
def mmd_test(a: Any, b: Any, *, n_perm: int = 500, seed: int = 0, kernel: str = "rbf") -> tuple[float, float]:
    """Two-sample kernel test (Gretton et al. 2012): (unbiased MMD², permutation p-value).

    RBF kernel with the median heuristic bandwidth (σ² = median squared distance over
    both sets pooled; ``kernel="poly"`` uses KID's kernel instead). The p-value is
    (1 + #{permuted MMD² ≥ observed}) / (1 + n_perm) over ``n_perm`` random relabellings.
    """
    a, b = _pair(a, b)
    if int(n_perm) < 1:
        raise ValueError(f"n_perm must be at least 1, got {n_perm}")
    k = _kernel_matrix(a, b, kernel)
    m, total = len(a), len(a) + len(b)
    observed = _mmd2_from_gram(k, np.arange(m), np.arange(m, total))
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(int(n_perm)):
        perm = rng.permutation(total)
        exceed += _mmd2_from_gram(k, perm[:m], perm[m:]) >= observed
    return observed, (exceed + 1) / (int(n_perm) + 1)


def _cv_balanced_accuracy(x: np.ndarray, y: np.ndarray, splits: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Balanced accuracy of standardised L2 logistic regression on each (train, test) split.

    The same as sklearn's cross_val_score over make_pipeline(StandardScaler(),
    LogisticRegression(class_weight="balanced")) with scoring="balanced_accuracy", written
    out because the bootstrap runs it hundreds of times and the generic machinery doubled
    the cost. ``class_weight="balanced"``: with unequal sets, predicting the larger one
    must not look like skill.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    scores = []
    with warnings.catch_warnings():
        # n ≤ d sets are often separable; L2 keeps the weights finite, the accuracy is what matters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splits:
            mean, std = x[train].mean(0), x[train].std(0)
            std[std == 0] = 1.0
            clf = LogisticRegression(max_iter=2000, class_weight="balanced")
            clf.fit((x[train] - mean) / std, y[train])
            pred = clf.predict((x[test] - mean) / std)
            scores.append(np.mean([np.mean(pred[y[test] == c] == c) for c in np.unique(y[test])]))
    return np.asarray(scores)


@_one_blas_thread
def probe_accuracy(a: Any, b: Any, *, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Cross-validated accuracy of a linear probe telling set a from set b: (mean, std over folds).

    Standardised features, L2 logistic regression, stratified shuffled folds (``seed``);
    ``folds`` is reduced to the smaller set's size. The score is the *balanced* accuracy
    (mean of the two per-set recalls, classes weighted alike), so 0.5 means
    indistinguishable whatever the set sizes, 1.0 linearly separable.
    """
    from sklearn.model_selection import StratifiedKFold

    a, b = _pair(a, b)
    k = max(2, min(int(folds), len(a), len(b)))
    x = np.vstack([a, b])
    y = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    scores = _cv_balanced_accuracy(x, y, StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y))
    return float(scores.mean()), float(scores.std())


@_one_blas_thread
def bootstrap_ci(
    stat_fn: Callable[..., float], a: Any, b: Any, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
    indices: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat_fn(a*, b*)``, each set resampled with replacement.

    The two sets are resampled independently (``n_boot`` times, numpy Generator from
    ``seed``). With ``indices=True`` ``stat_fn`` receives the two index arrays instead of
    the resampled rows (so it can treat repeated images itself). Non-finite statistics are
    dropped; (nan, nan) if none is left. The interval shows the spread of the statistic
    over resamples. Not for a statistic biased at small n: a resample repeats about a third
    of its rows, which acts like a smaller n, so for the Fréchet distance the whole interval
    can lie above the estimate; use :func:`half_sample_ci` for it.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    a, b = _pair(a, b, minimum=1)
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for i in range(int(n_boot)):
        ia, ib = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        try:
            values[i] = stat_fn(ia, ib) if indices else stat_fn(a[ia], b[ib])
        except (ValueError, np.linalg.LinAlgError):  # a degenerate resample (e.g. one class too small)
            values[i] = np.nan
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


@_one_blas_thread
def half_sample_ci(
    stat_fn: Callable[..., float], a: Any, b: Any, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
) -> tuple[float, float]:
    """Bias-corrected half-sample interval for a statistic that is biased at small n (the Fréchet distance).

    Each of ``n_boot`` rounds draws ⌊n/2⌋ rows of each set *without* replacement and computes
    ``stat_fn`` on the two halves; with θ̂ = ``stat_fn(a, b)`` and q the half-sample quantiles
    the interval is the basic (pivot) one, [2θ̂ − q_hi, 2θ̂ − q_lo], for the population value.

    Why not the bootstrap: a resample with replacement repeats about a third of its rows.
    The Fréchet distance grows as n falls (the mean difference alone is inflated by
    tr Σa/na + tr Σb/nb), and under Ledoit-Wolf shrinkage repeated rows also look like
    structure, so the shrinkage drops. Measured on two Gaussians, 64 dims, 20 vs 20 rows:
    estimate 11, bootstrap mean 42; the percentile interval lay wholly above its estimate
    and never covered the true distance. Half-samples repeat no row. Why halves: for a
    statistic whose bias and variance both fall like 1/n, a half-sample drawn without
    replacement differs from the full-sample value by as much, in mean and in spread, as the
    full-sample value differs from the population value (bias b/(n/2) − b/n = b/n; variance,
    with the finite-population correction, (1/m − 1/n)σ² = σ²/n at m = n/2). So θ̂_half − θ̂
    stands in for θ̂ − θ, which is the pivot of the basic interval: this is m-out-of-n
    subsampling at m = n/2, the one m where it needs no rescaling (half-sampling, McCarthy
    1969). Where the bias grows faster than 1/n (shrinkage at n ≤ dim) the correction
    overshoots and the interval errs low and wide; odd n (⌊n/2⌋ rows) errs the same way:
    conservative, never narrower. The interval need not contain a biased θ̂, see
    :func:`measure_rows`. (nan, nan) when a set has fewer than :data:`MIN_PER_HALF_SAMPLE`
    rows or no half-sample gives a finite value.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    a, b = _pair(a, b, minimum=1)
    if min(len(a), len(b)) < MIN_PER_HALF_SAMPLE:
        return math.nan, math.nan
    estimate = float(stat_fn(a, b))
    rng = np.random.default_rng(seed)
    m_a, m_b = len(a) // 2, len(b) // 2
    values = np.empty(int(n_boot))
    for i in range(int(n_boot)):
        ia, ib = rng.permutation(len(a))[:m_a], rng.permutation(len(b))[:m_b]
        try:
            values[i] = stat_fn(a[ia], b[ib])
        except (ValueError, np.linalg.LinAlgError):
            values[i] = np.nan
    values = values[np.isfinite(values)]
    if not len(values) or not math.isfinite(estimate):
        return math.nan, math.nan
    tail = (1 - level) / 2
    q_lo, q_hi = np.quantile(values, [tail, 1 - tail])
    return float(2 * estimate - q_hi), float(2 * estimate - q_lo)


#: What a negative unbiased KID/MMD² and a below-chance probe mean, in plain words.
NEGATIVE_MEANS = ("below 0: no detectable difference, not an error (an unbiased estimate of a difference "
                  "that is really about 0 scatters around 0)")
BELOW_CHANCE_MEANS = ("below chance (0.5): the probe found nothing to learn (cross-validated accuracy "
                      "without a signal scatters around chance)")


def reading_note(measure: str, value: float) -> str:
    """A plain explanation for a value that looks wrong but is not, else "".

    A negative KID or MMD² (unbiased estimates scatter around 0 when the sets do not
    differ) and a probe accuracy below 0.5 (without a signal, cross-validated accuracy
    scatters around chance) mean "no detectable difference", which readers otherwise
    take for a bug.
    """
    if measure in ("kid", "mmd") and value < 0:
        return NEGATIVE_MEANS
    if measure == "probe" and value < 0.5:
        return BELOW_CHANCE_MEANS
    return ""


# Bootstrap statistics that know which rows are repeats of one image.


def _mmd2_resampled(k: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> float:
    """Unbiased MMD² on a bootstrap resample, leaving out pairs that are one image twice.

    A plain U-statistic on a resample counts k(x, x) for repeated images as a within-set
    pair, which biases MMD² upward; excluding same-image pairs centres the bootstrap
    distribution on the full-sample estimate.
    """
    def within(idx: np.ndarray) -> float:
        block = k[np.ix_(idx, idx)]
        distinct = idx[:, None] != idx[None, :]
        return float(block[distinct].mean()) if distinct.any() else math.nan

    return within(ia) + within(ib) - 2 * float(k[np.ix_(ia, ib)].mean())


def _probe_resampled(x: np.ndarray, m: int, ia: np.ndarray, ib: np.ndarray, folds: int, seed: int) -> float:
    """Probe accuracy on a resample with group-aware folds: copies of one image never span train and test."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.r_[ia, ib + m]
    k = min(folds, len(np.unique(ia)), len(np.unique(ib)))
    if k < 2:
        return math.nan
    y = np.r_[np.zeros(len(ia), int), np.ones(len(ib), int)]
    splits = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(x[groups], y, groups)
    scores = _cv_balanced_accuracy(x[groups], y, splits)
    return float(scores.mean())



# Every measure of two feature matrices, each with its interval and caveats.


def standardise_jointly(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre both sets on their joint mean and divide by one number, the RMS deviation from it.

    One scalar per layer (not per dimension), so the geometry is kept: the Fréchet distance
    becomes FD / σ² with σ² = tr(Σ_joint) / d, a distance in units of the sets' average
    per-dimension variance, and KID's kernel (x·y/d + 1)³ gets inputs of order 1, as it has
    with Inception features. The scale depends on both sets: compare values across the
    layers of one result, not across results for different pairs of sets.
    """
    joint = np.concatenate([a, b])
    centre = joint.mean(0)
    spread = math.sqrt(float(np.mean((joint - centre) ** 2)))
    if spread == 0:
        return a - centre, b - centre
    return (a - centre) / spread, (b - centre) / spread


@_one_blas_thread
def measure_rows(
    a: np.ndarray, b: np.ndarray, measures: Iterable[str], *, n_boot: int, n_perm: int, seed: int, folds: int = 5,
) -> list[dict]:
    """One row per measure (of :data:`MEASURES`) comparing the rows of ``a`` with those of ``b``.

    Each row: measure, value, ci_low, ci_high (from ``n_boot`` resamples, ``seed``), p_value
    (MMD only, from ``n_perm`` permutations; else NaN), n_a, n_b, dim and a note on the
    caveats (shrinkage at n ≤ dim, what a negative or below-chance value means, an interval
    off its estimate). Fréchet: :func:`half_sample_ci`, a bias-corrected interval for the
    population distance, clipped at 0 and widened to reach the estimate (see below). For
    kid/mmd and the probe a bootstrap whose resampling keeps copies of one image from pairing
    with themselves or spanning train and test; these are unbiased (or, for the probe,
    biased alike in estimate and resample), so the percentile interval sits around the value.
    """
    measures = list(measures)
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; choose from {', '.join(MEASURES)}")
    n_a, n_b, dim = len(a), len(b), a.shape[1]
    small = min(n_a, n_b) <= dim
    base = {"n_a": n_a, "n_b": n_b, "dim": dim}
    m = len(a)
    rows = []
    for measure in measures:
        p_value, note = math.nan, []
        if measure == "frechet":
            method = _shrinkage_method("auto", min(n_a, n_b), dim)
            value = frechet_distance(a, b, shrinkage=method)
            lo, hi = half_sample_ci(lambda x, y: frechet_distance(x, y, shrinkage=method), a, b,
                                    n_boot=n_boot, seed=seed)
            if small:
                note.append(f"n ≤ dim ({min(n_a, n_b)} ≤ {dim}): Ledoit-Wolf shrinkage covariance; "
                            "biased, prefer kid/mmd at this n")
            if math.isnan(lo):
                note.append(f"no interval: it needs at least {MIN_PER_HALF_SAMPLE} images per set")
            else:
                if value > hi:
                    note.append(f"estimate above its bias-corrected interval [{max(lo, 0):.3g}, {max(hi, 0):.3g}]: "
                                "inflated by small-sample bias; the interval is extended up to it")
                # Departs from the textbook basic interval: a distance is ≥ 0, and the union with the
                # point estimate (coverage can only grow) keeps the table's value inside its interval.
                lo, hi = max(min(lo, value), 0.0), max(hi, value)
        elif measure in ("kid", "mmd"):
            kernel = "poly" if measure == "kid" else "rbf"
            gram = _kernel_matrix(a, b, kernel)
            value = _mmd2_from_gram(gram, np.arange(m), np.arange(m, m + n_b))
            if measure == "mmd":
                value, p_value = mmd_test(a, b, n_perm=n_perm, seed=seed)
                note.append(f"RBF kernel, median bandwidth; p from {n_perm} permutations")
            lo, hi = bootstrap_ci(lambda ia, ib: _mmd2_resampled(gram, ia, ib + m), a, b,
                                  n_boot=n_boot, seed=seed, indices=True)
        else:
            value, spread = probe_accuracy(a, b, folds=folds, seed=seed)
            x = np.vstack([a, b])
            lo, hi = bootstrap_ci(lambda ia, ib: _probe_resampled(x, m, ia, ib, folds, seed), a, b,
                                  n_boot=n_boot, seed=seed, indices=True)
            note.append(f"{max(2, min(folds, n_a, n_b))}-fold CV, fold std {spread:.2f}")
        if reading_note(measure, value):
            note.append(reading_note(measure, value))
        if not math.isnan(lo) and not (lo <= value <= hi):
            note.append("bootstrap interval excludes the estimate (small-sample bias of this measure)")
        rows.append({**base, "measure": measure, "value": value, "ci_low": lo, "ci_high": hi,
                     "p_value": p_value, "note": "; ".join(note)})
    return rows
