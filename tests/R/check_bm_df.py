"""Reference implementation of HC2 standard errors with Bell-McCaffrey degrees of freedom,
checked against clubSandwich (tests/R/clubsandwich_expected.csv).

Run from the repository root: ``python3 tests/R/check_bm_df.py`` (numpy only). It rebuilds each
design matrix from ``small_sample_data.csv`` with R's treatment coding, recomputes the estimate,
HC2 SE and Bell-McCaffrey df of every coefficient (and of the cell contrast
frame_shares + teaming + frame_shares:teaming), and prints the largest relative discrepancy to
clubSandwich's ``estimate``, ``se_hc2`` and ``df_bm``. Exit status 1 if any exceeds 1e-6.

``bm_df`` and ``hc2_se`` are pure functions meant to move into the package later.

Formulas
--------
X is the n x p design (full column rank), M = (X'X)^-1, H = X M X' with diagonal h_ii, and c a
p-vector defining the contrast c'beta. Let l = X M c (so c'beta_hat = l'y) and
a_i = l_i / sqrt(1 - h_ii).

HC2 (MacKinnon & White 1985):  V_HC2 = sum_i a_i^2 e_i^2 with e = (I - H) y, SE = sqrt(V_HC2).

Bell-McCaffrey df (Bell & McCaffrey 2002, "Bias reduction in standard errors for linear
regression with multi-stage samples", Survey Methodology 28(2); Imbens & Kolesar 2016, "Robust
standard errors in small samples: some practical advice", REStat 98(4), eq. for K_BM): under the
working model y ~ N(X beta, sigma^2 I), e = (I - H) eps, so

    V_HC2 = eps' G G' eps,   G = (I - H) diag(a)   (n x n; column i is a_i (I - H)_i),

a weighted sum of chi^2_1 variables with weights sigma^2 * lambda_k, lambda = eigenvalues of
G'G. Matching the first two moments to sigma^2 * chi^2_K / K * E[V] gives

    df_BM = (sum_k lambda_k)^2 / sum_k lambda_k^2 = tr(G'G)^2 / tr((G'G)^2).

This equals clubSandwich's Satterthwaite df for CR2 with every observation its own cluster
(Pustejovsky & Tipton 2018, JBES 36(4)) with the default working model Phi = I.

Weights: with analytic (inverse-variance) weights w, pass ``w``; the functions then work on the
transformed regression sqrt(w) X, sqrt(w) y, which is estimatr's weighted HC2 and clubSandwich's
``vcovCR(..., inverse_var = TRUE)`` (working model Var(e_i) = sigma^2 / w_i).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
CONTRAST = "cell:frame_shares/teaming"
CONTRAST_TERMS = ("frame_shares", "teaming", "frame_shares:teaming")


def _hc2_parts(X: np.ndarray, c: np.ndarray, w: np.ndarray | None):
    X = np.asarray(X, dtype=float)
    sw = None if w is None else np.sqrt(np.asarray(w, dtype=float))
    if sw is not None:
        X = X * sw[:, None]
    Q, R = np.linalg.qr(X)  # H = Q Q', M = R^-1 R^-T
    ell = Q @ np.linalg.solve(R.T, np.asarray(c, dtype=float))  # X M c
    h = np.einsum("ij,ij->i", Q, Q)
    if np.any(h >= 1 - 1e-10):
        raise ValueError("a leverage is 1: HC2 is undefined")
    a = ell / np.sqrt(1.0 - h)
    return X, Q, R, sw, a


def bm_df(X: np.ndarray, c: np.ndarray, w: np.ndarray | None = None) -> float:
    """Bell-McCaffrey degrees of freedom of the HC2 variance of c'beta_hat (see module docstring).

    df = tr(G'G)^2 / tr((G'G)^2), G = (I - H) diag(a), a_i = (X M c)_i / sqrt(1 - h_ii).
    """
    X, Q, _, _, a = _hc2_parts(X, c, w)
    n = X.shape[0]
    G = (np.eye(n) - Q @ Q.T) * a[None, :]  # (I - H) diag(a)
    GtG = G.T @ G
    return float(np.trace(GtG) ** 2 / np.sum(GtG * GtG))  # tr(A^2) = ||A||_F^2 for symmetric A


def hc2_se(X: np.ndarray, y: np.ndarray, c: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """(c'beta_hat, HC2 standard error of c'beta_hat) for OLS (or WLS with weights w) of y on X."""
    X, Q, R, sw, a = _hc2_parts(X, c, w)
    y = np.asarray(y, dtype=float)
    if sw is not None:
        y = y * sw
    beta = np.linalg.solve(R, Q.T @ y)
    e = y - X @ beta
    return float(np.asarray(c, dtype=float) @ beta), float(np.sqrt(np.sum(a**2 * e**2)))


# ---------------------------------------------------------------------------------------------
# the check against clubSandwich


def _read(name: str) -> list[dict]:
    with open(HERE / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _design(rows: list[dict], terms: list[str]) -> np.ndarray:
    """Columns named like R's coefficients of end ~ frame_shares [* teaming] + start + factor(stratum)."""
    fs = np.array([float(r["frame_shares"]) for r in rows])
    tm = np.array([float(r["teaming"]) for r in rows])
    cols = {
        "(Intercept)": np.ones(len(rows)),
        "frame_shares": fs,
        "teaming": tm,
        "frame_shares:teaming": fs * tm,
        "start": np.array([float(r["start"]) for r in rows]),
    }
    for s in sorted({r["stratum"] for r in rows})[1:]:  # R's treatment coding: first level dropped
        cols[f"factor(stratum){s}"] = np.array([float(r["stratum"] == s) for r in rows])
    return np.column_stack([cols[t] for t in terms])


def main() -> int:
    data = _read("small_sample_data.csv")
    expected = _read("clubsandwich_expected.csv")
    worst = {"estimate": 0.0, "se_hc2": 0.0, "df_bm": 0.0, "se_estimatr": 0.0}
    worst_abs = dict.fromkeys(worst, 0.0)
    n_checked = 0
    for key in sorted({(e["dataset"], e["model"]) for e in expected}):
        ex = [e for e in expected if (e["dataset"], e["model"]) == key]
        rows = [r for r in data if r["dataset"] == key[0]]
        terms = [e["term"] for e in ex if e["term"] != CONTRAST]
        X = _design(rows, terms)
        y = np.array([float(r["end"]) for r in rows])
        w = np.array([float(r["w"]) for r in rows])
        w = None if np.all(w == 1.0) else w
        for e in ex:
            if e["term"] == CONTRAST:
                c = np.array([float(t in CONTRAST_TERMS) for t in terms])
            else:
                c = np.eye(len(terms))[terms.index(e["term"])]
            est, se = hc2_se(X, y, c, w)
            df = bm_df(X, c, w)
            for name, mine in (("estimate", est), ("se_hc2", se), ("df_bm", df), ("se_estimatr", se)):
                ref = float(e[name])
                rel = abs(mine - ref) / max(abs(ref), 1e-8)
                worst[name] = max(worst[name], rel)
                worst_abs[name] = max(worst_abs[name], abs(mine - ref))
            n_checked += 1
    print(f"checked {n_checked} coefficients/contrasts in {len({e['dataset'] for e in expected})} datasets")
    for name, v in worst.items():
        print(f"max |python - R| {name:12s} relative {v:.3g}  absolute {worst_abs[name]:.3g}")
    ok = max(worst.values()) < 1e-6
    print("OK" if ok else "FAIL: discrepancy above 1e-6")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
