"""The statistics behind moodcam-report: shares with intervals, and campaign comparisons
that hold time of day and place fixed.

Pure functions on counts. A *stratum* is one (device, hour) cell: viewers seen by the same
camera in the same clock hour. Comparisons pool evidence only within strata (Mantel-Haenszel
and Cochran-Mantel-Haenszel), so a campaign shown mostly at lunchtime is compared with the
others at lunchtime, not with their evening audience.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

Z95 = 1.959963984540054  # the 97.5% point of the standard normal distribution


@dataclass(frozen=True)
class Share:
    """k of n, with its Wilson score 95% interval (share, low, high are None when n = 0)."""

    k: int
    n: int

    @property
    def share(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | tuple[None, None]:
        return wilson(self.k, self.n)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | tuple[None, None]:
    """The Wilson score interval for a proportion k/n: unlike the textbook p +- z*se it stays
    inside [0, 1] and keeps its coverage for small n and shares near 0 or 1."""
    if n <= 0:
        return None, None
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Difference:
    """A share difference (first minus second) pooled over strata, with its 95% interval."""

    estimate: float
    low: float
    high: float
    n1: int  # viewers of each campaign in the strata where both were seen
    n2: int
    strata: int  # strata that contributed (both campaigns seen)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass
class MHSum:
    """Running sums of a Mantel-Haenszel risk difference (additive over strata, so
    strata can come in chunks); `result()` gives the Difference."""

    num: float = 0.0
    weight: float = 0.0
    var: float = 0.0
    n1: int = 0
    n2: int = 0
    strata: int = 0

    def add(self, k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray) -> None:
        """Strata as arrays of counts; those where either group has no viewers carry no
        information and are skipped."""
        keep = (n1 > 0) & (n2 > 0)
        k1, n1, k2, n2 = (np.asarray(x, dtype=float)[keep] for x in (k1, n1, k2, n2))
        if not len(n1):
            return
        big_n = n1 + n2
        self.num += float(((k1 * n2 - k2 * n1) / big_n).sum())
        self.weight += float((n1 * n2 / big_n).sum())
        # Greenland-Robins (as in Cochrane's RevMan).
        self.var += float(((k1 * (n1 - k1) * n2 ** 3 + k2 * (n2 - k2) * n1 ** 3)
                           / (n1 * n2 * big_n ** 2)).sum())
        self.n1 += int(n1.sum())
        self.n2 += int(n2.sum())
        self.strata += len(n1)

    def result(self, z: float = Z95) -> Difference | None:
        """None when no stratum had both groups, or when the variance is zero (every
        viewer in one class: nothing to estimate from)."""
        if not self.strata:
            return None
        estimate = self.num / self.weight
        se = math.sqrt(self.var) / self.weight
        if se == 0:
            return None
        return Difference(estimate, estimate - z * se, estimate + z * se, self.n1, self.n2,
                          self.strata)


def mh_difference(strata: Sequence[tuple[int, int, int, int]] | np.ndarray,
                  z: float = Z95) -> Difference | None:
    """Mantel-Haenszel risk difference of two groups over strata of (k1, n1, k2, n2), with
    the Greenland-Robins variance and its 95% interval (see MHSum)."""
    arr = np.asarray(strata, dtype=float).reshape(-1, 4)
    acc = MHSum()
    acc.add(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
    return acc.result(z)


@dataclass(frozen=True)
class Association:
    """A test of "the mood mix does not depend on the campaign"."""

    statistic: float
    df: int
    p_value: float
    n: int  # viewers in the tested table


def chi_square(table: np.ndarray) -> Association | None:
    """Pearson's chi-square on a campaign x mood table (rows/columns that are all zero are
    dropped). None when fewer than two campaigns or moods are left."""
    t = _trim(np.asarray(table, dtype=float))
    if t is None:
        return None
    result = sps.chi2_contingency(t, correction=False)
    return Association(float(result.statistic), int(result.dof), float(result.pvalue),
                       int(t.sum()))


def cmh(tables: Sequence[np.ndarray] | np.ndarray) -> Association | None:
    """The generalised Cochran-Mantel-Haenszel test of general association (Landis, Heyman
    and Koch 1978) for R x C tables over strata: under "no association in any stratum",
    Q = (O - E)' V^-1 (O - E) over the first (R-1)(C-1) cells, summed across strata, is
    chi-square with (R-1)(C-1) degrees of freedom. With one stratum Q = (N-1)/N times
    Pearson's chi-square. A singular V (a campaign or mood absent from all informative
    strata) uses the pseudo-inverse and its rank as df."""
    arr = np.asarray(tables, dtype=float)
    return cmh_chunks([arr] if arr.size else [])


def cmh_chunks(chunks: Iterable[np.ndarray]) -> Association | None:
    """cmh() over strata given as (S, R, C) arrays, chunk by chunk (bounded memory)."""
    diff = cov = None
    n_total = 0
    shape: tuple[int, int] | None = None
    for t in chunks:
        if t.ndim != 3:
            raise ValueError(f"strata must be an (S, R, C) array, not shape {t.shape}")
        if shape is None:
            shape = (t.shape[1], t.shape[2])
            r, c = shape
            if r < 2 or c < 2:
                return None
            diff = np.zeros((r - 1) * (c - 1))
            cov = np.zeros(((r - 1) * (c - 1),) * 2)
        elif t.shape[1:] != shape:
            raise ValueError(f"stratum shape {t.shape[1:]} differs from {shape}")
        assert diff is not None and cov is not None
        r, c = shape
        big_n = t.sum(axis=(1, 2))
        t = t[big_n >= 2]
        big_n = big_n[big_n >= 2]
        if not len(t):
            continue
        rows, cols = t.sum(axis=2), t.sum(axis=1)
        pr, pc = rows / big_n[:, None], cols / big_n[:, None]
        expected = rows[:, :, None] * cols[:, None, :] / big_n[:, None, None]
        diff += (t - expected)[:, : r - 1, : c - 1].sum(axis=0).ravel()
        vr = (pr[:, :, None] * np.eye(r) - pr[:, :, None] * pr[:, None, :])[:, : r - 1, : r - 1]
        vc = (pc[:, :, None] * np.eye(c) - pc[:, :, None] * pc[:, None, :])[:, : c - 1, : c - 1]
        w = big_n ** 2 / (big_n - 1)
        # kron(vr, vc)[a*(C-1)+c, b*(C-1)+d] = vr[a, b] * vc[c, d], summed over strata.
        cov += np.einsum("s,sab,scd->acbd", w, vr, vc).reshape(cov.shape)
        n_total += int(big_n.sum())
    if diff is None or cov is None or not n_total:
        return None
    df = int(np.linalg.matrix_rank(cov))
    if df == 0:
        return None
    q = float(diff @ np.linalg.pinv(cov) @ diff)
    return Association(q, df, float(sps.chi2.sf(q, df)), n_total)


def _trim(t: np.ndarray) -> np.ndarray | None:
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return None
    return t


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def points(x: float) -> str:
    return f"{100 * x:+.1f} points"


def describe_difference(a: str, b: str, mood: str, d: Difference | None,
                        shares: Mapping[str, int], min_viewers: int,
                        shared: tuple[int, int] = (0, 0)) -> str:
    """One plain sentence on whether campaigns a and b differ in their `mood` share.
    `shares`: each campaign's classified viewers overall; `shared`: a's and b's classified
    viewers in the device-hours where both were seen (when d could not be computed)."""
    if d is None and shared == (0, 0):
        return (f"{a} vs {b}: not enough viewers to compare their {mood} shares: they were "
                f"never both seen by the same device in the same hour ({shares.get(a, 0)} and "
                f"{shares.get(b, 0)} classified viewers overall).")
    n1, n2 = (d.n1, d.n2) if d is not None else shared
    if d is None or n1 < min_viewers or n2 < min_viewers:
        return (f"{a} vs {b}: not enough viewers to tell their {mood} shares apart: "
                f"{n1} and {n2} classified viewers in shared device-hours, at least "
                f"{min_viewers} each are needed.")
    span = f"95% interval {points(d.low)} to {points(d.high)}"
    if not d.excludes_zero:
        return (f"{a} vs {b}: the data cannot tell their {mood} shares apart "
                f"(difference {points(d.estimate)}, {span}; {d.n1} and {d.n2} viewers).")
    more = "higher" if d.estimate > 0 else "lower"
    return (f"{a} has a {more} {mood} share than {b}: {points(d.estimate)} "
            f"({span}; {d.n1} and {d.n2} viewers in {d.strata} shared device-hours).")
