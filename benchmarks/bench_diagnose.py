"""Benchmark: the design diagnosis (``hbeval diagnose``) against refitting loops, on the same data.

Run: ``.venv/bin/python benchmarks/bench_diagnose.py [--sims 1000] [--sizes 40 80 160 320] [--rounds 5]``

Every round simulates the 2×2 once per size (batch assignment within 8 strata, start–end
correlation 0.6, 20 % attrition) and hands the same simulated data to each contender:

* **hbeval** — :func:`hbeval.stats.power.partial_covariates` + :func:`~hbeval.stats.power.ancova_sims`:
  the primary estimator (main-effects model and the model with the product term, stratum fixed
  effects, HC2) for every simulation at once, all six contrasts. Timed separately, for
  information: the whole per-size diagnosis with 500 RI draws per simulation
  (:func:`~hbeval.stats.power.simulate_chunk`), which the peers do not do.
* **statsmodels loop** — per simulation, the two designs built with numpy and
  ``sm.OLS(...).fit(cov_type="HC2")`` each (the cheapest honest refitting loop in Python;
  the fallback peer: DeclareDesign's ``diagnose_design`` is R only and not packaged for Debian).
  ``--peer-subset`` simulations per size are timed and the time is extrapolated linearly.
* **R estimatr loop** (when ``Rscript`` with estimatr is installed) — the same data written to
  CSV; in R, per simulation, ``lm_robust(se_type = "HC2")`` for the two models: what
  DeclareDesign's ``diagnose_design`` runs per simulation for an ``lm_robust`` estimator. Timed
  inside R (``system.time`` around the loop, so R's start-up and the CSV read are left out).

Contenders alternate within each round; the script prints each round's times and the ratios'
minimum, median and maximum, and checks that the peers' estimates and SEs equal hbeval's.
BLAS is limited to one thread for every contender (the machine is shared).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

from hbeval.randomisation.design import batch_draws
from hbeval.stats import power as pw
from hbeval.stats.ri import blas_single_thread

SD, RHO, ATTRITION, STRATA = 1.6, 0.6, 0.2, 8
EFFECTS = {"frame_shares": 0.5, "teaming": 0.5, "interaction": 0.0}


def simulate(n: int, sims: int, seed: int) -> dict[str, np.ndarray]:
    """One size's simulated data: strata, assignments, start and end scores, observed mask."""
    rng = np.random.default_rng(seed)
    stratum = np.arange(n) % STRATA
    cells = batch_draws(stratum, sims, rng)
    start, end, observed = pw.outcome_draws(rng, sims, n, SD, RHO, ATTRITION)
    end = end + pw.effect_shift(cells, EFFECTS)
    return {"stratum": stratum, "cells": cells, "start": start, "end": end, "observed": observed}


def run_hbeval(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    part = pw.partial_covariates(d["start"], d["observed"], d["stratum"])
    fits = pw.ancova_sims(part, d["cells"], d["end"])
    return fits.est, fits.se


def run_full(d: dict[str, np.ndarray], ri: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ri_draws = batch_draws(d["stratum"], ri, rng)
    pw.simulate_chunk(rng, d["stratum"], d["cells"], sd=SD, rho=RHO, attrition=ATTRITION, effects=EFFECTS,
                      ri_draws=ri_draws)


def _singletons_dropped(obs: np.ndarray, stratum: np.ndarray) -> np.ndarray:
    counts = np.bincount(stratum[obs], minlength=stratum.max() + 1)
    out: np.ndarray = obs & (counts[stratum] > 1)
    return out


def run_statsmodels(d: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    est = np.full((k, 6), np.nan)
    se = np.full((k, 6), np.nan)
    for s in range(k):
        m = _singletons_dropped(d["observed"][s], d["stratum"])
        c, g = d["cells"][s][m], d["stratum"][m]
        f, t = (c // 2).astype(float), (c % 2).astype(float)
        levels = np.unique(g)
        dummies = (g[:, None] == levels[None, 1:]).astype(float)
        base = [np.ones(len(c)), f, t]
        rest = [d["start"][s][m], *dummies.T]
        y = d["end"][s][m]
        main = sm.OLS(y, np.column_stack(base + rest)).fit(cov_type="HC2")
        inter = sm.OLS(y, np.column_stack([*base, f * t, *rest])).fit(cov_type="HC2")
        w = np.zeros((4, inter.params.size))
        w[0, 3] = 1.0  # interaction
        w[1, 2] = 1.0  # cell frame_only/teaming = T
        w[2, 1] = 1.0  # cell frame_shares/no_teaming = F
        w[3, 1:4] = 1.0  # cell frame_shares/teaming = F + T + FT
        cov = inter.cov_params()
        est[s] = np.r_[main.params[1:3], w @ inter.params]
        se[s] = np.r_[main.bse[1:3], np.sqrt(np.einsum("ij,jk,ik->i", w, cov, w))]
    return est, se


R_LOOP = r"""
suppressMessages(library(estimatr))
d <- read.csv(commandArgs(TRUE)[1])
k <- as.integer(commandArgs(TRUE)[2])
est <- matrix(NA_real_, k, 6); se <- matrix(NA_real_, k, 6)
tm <- system.time(for (s in seq_len(k)) {
  x <- d[d$sim == s - 1, ]
  x$stratum <- factor(x$stratum)
  a <- lm_robust(end ~ frame_shares + teaming + start + stratum, data = x, se_type = "HC2")
  b <- lm_robust(end ~ frame_shares * teaming + start + stratum, data = x, se_type = "HC2")
  W <- matrix(0, 4, length(coef(b))); colnames(W) <- names(coef(b))
  W[1, "frame_shares:teaming"] <- 1; W[2, "teaming"] <- 1; W[3, "frame_shares"] <- 1
  W[4, c("frame_shares", "teaming", "frame_shares:teaming")] <- 1
  est[s, ] <- c(coef(a)[c("frame_shares", "teaming")], W %*% coef(b))
  se[s, ] <- c(a$std.error[c("frame_shares", "teaming")], sqrt(diag(W %*% vcov(b) %*% t(W))))
})
cat(sprintf("%.6f\n", tm[["elapsed"]]))
write.csv(cbind(est, se), commandArgs(TRUE)[3], row.names = FALSE)
"""


def r_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    ok = subprocess.run(["Rscript", "-e", "library(estimatr)"], capture_output=True)
    return ok.returncode == 0


def run_r(d: dict[str, np.ndarray], k: int, tmp: Path) -> tuple[float, np.ndarray, np.ndarray]:
    rows = []
    for s in range(k):
        m = _singletons_dropped(d["observed"][s], d["stratum"])
        c = d["cells"][s][m]
        rows.append(pd.DataFrame({"sim": s, "stratum": d["stratum"][m], "frame_shares": c // 2, "teaming": c % 2,
                                  "start": d["start"][s][m], "end": d["end"][s][m]}))
    data, script, res = tmp / "sims.csv", tmp / "loop.R", tmp / "r_out.csv"
    pd.concat(rows).to_csv(data, index=False, float_format="%.17g")
    script.write_text(R_LOOP, encoding="utf-8")
    out = subprocess.run(["Rscript", str(script), str(data), str(k), str(res)], capture_output=True, text=True,
                         check=True)
    secs = float(out.stdout.strip().splitlines()[-1])
    r = pd.read_csv(res).to_numpy(float)
    return secs, r[:, :6], r[:, 6:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[40, 80, 160, 320])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--peer-subset", type=int, default=200, help="simulations per size timed for the peers")
    ap.add_argument("--ri", type=int, default=500, help="RI draws of the full diagnosis timed for information")
    args = ap.parse_args()
    k = min(args.peer_subset, args.sims)
    use_r = r_available()
    ratios: dict[str, list[float]] = {"statsmodels": [], "R estimatr": []}
    with blas_single_thread(), tempfile.TemporaryDirectory() as tmpd:
        for rnd in range(args.rounds):
            data = {n: simulate(n, args.sims, seed=1000 * rnd + n) for n in args.sizes}
            t_hb = t_sm = t_r = t_full = 0.0
            order = ("hbeval", "statsmodels", "R") if rnd % 2 == 0 else ("R", "statsmodels", "hbeval")
            for who in order:
                for d in data.values():
                    if who == "hbeval":
                        t0 = time.perf_counter()
                        est, se = run_hbeval(d)
                        t_hb += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        run_full(d, args.ri, seed=rnd)
                        t_full += time.perf_counter() - t0
                        d["hb"] = (est, se)  # type: ignore[assignment]
                    elif who == "statsmodels":
                        t0 = time.perf_counter()
                        d["sm"] = run_statsmodels(d, k)  # type: ignore[assignment]
                        t_sm += (time.perf_counter() - t0) * args.sims / k
                    elif use_r:
                        secs, e, s = run_r(d, k, Path(tmpd))
                        d["r"] = (e, s)  # type: ignore[assignment]
                        t_r += secs * args.sims / k
            for n, d in data.items():
                for peer in ("sm", "r") if use_r else ("sm",):
                    e, s = d[peer]  # type: ignore[misc]
                    hb_e, hb_s = d["hb"]  # type: ignore[misc]
                    assert np.allclose(e, hb_e[:k], atol=1e-8) and np.allclose(s, hb_s[:k], atol=1e-8), (peer, n)
            ratios["statsmodels"].append(t_sm / t_hb)
            line = (f"round {rnd + 1}: {args.sims} sims x {len(args.sizes)} sizes: hbeval {t_hb:.3f} s "
                    f"(whole diagnosis with {args.ri} RI draws per sim {t_full:.2f} s); statsmodels loop {t_sm:.1f} s "
                    f"(x{t_sm / t_hb:.0f})")
            if use_r:
                ratios["R estimatr"].append(t_r / t_hb)
                line += f"; R estimatr loop {t_r:.1f} s (x{t_r / t_hb:.0f})"
            print(line, flush=True)
    for peer, r in ratios.items():
        if r:
            print(f"{peer} / hbeval: min x{min(r):.0f}, median x{float(np.median(r)):.0f}, max x{max(r):.0f} "
                  f"(peers timed on {k} sims per size, extrapolated; estimates and HC2 SEs equal to 1e-8)")


if __name__ == "__main__":
    main()
