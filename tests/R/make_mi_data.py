"""Write tests/R/mi_data.csv: a synthetic 2x2 factorial trial with missing outcomes for the
multiple-imputation (mice) fixture.

Run from the repository root: ``python3 tests/R/make_mi_data.py`` (numpy only). Then
``Rscript tests/R/mice_fixtures.R`` writes ``mice_expected.csv`` from it.

n = 200 families in 4 strata (permuted blocks of the four cells within each stratum):

* ``frame_shares``, ``teaming``: the two randomised arms (0/1), complete.
* ``stratum``: text, complete.
* ``start``: baseline score (0-10-like scale), complete.
* ``end``: follow-up score, linear in start + arms + stratum + normal error; missing at random
  given ``start`` (logistic, lower start -> more often missing), 45 of 200 (22.5 %) missing.
* ``pre_cost``: pre-period service cost (euro, log-normal, right-skewed), complete.
* ``cost``: follow-up cost, log-normal in pre_cost with an arm effect (skewed); missing at random
  given ``pre_cost`` (higher pre-period cost -> more often missing), 20 of 200 (10 %) missing.

Missing values are empty fields. Floats have 17 significant digits; the seed is fixed, so the
file is reproducible byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 20261126
N = 200
N_MISS_END = 45  # 22.5 %
N_MISS_COST = 20  # 10 %
STRATA = ("east", "north", "south", "west")
STRATUM_EFFECT = {"east": 0.0, "north": 0.3, "south": -0.25, "west": 0.15}


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw(rng: np.random.Generator, propensity: np.ndarray, k: int) -> np.ndarray:
    idx = rng.choice(len(propensity), size=k, replace=False, p=propensity / propensity.sum())
    out = np.zeros(len(propensity), dtype=bool)
    out[idx] = True
    return out


def main() -> None:
    rng = np.random.default_rng([SEED, 3])
    stratum = np.repeat(STRATA, N // len(STRATA))
    cell = np.concatenate([rng.permutation(np.tile(np.arange(4), N // 16 + 1))[: N // 4] for _ in STRATA])
    fs, tm = cell // 2, cell % 2
    s_eff = np.array([STRATUM_EFFECT[s] for s in stratum])

    start = np.clip(rng.normal(5.0, 1.3, N), 0.0, 10.0)
    end = 1.8 + 0.65 * start + 0.25 * fs + 0.35 * tm - 0.15 * fs * tm + s_eff + rng.normal(0, 0.8, N)

    pre_cost = np.exp(rng.normal(8.0, 0.8, N))
    cost = np.exp(1.5 + 0.8 * np.log(pre_cost) - 0.10 * fs - 0.15 * tm + rng.normal(0, 0.6, N))

    # MAR missingness: exactly N_MISS_END (N_MISS_COST) families drawn without replacement with
    # probability proportional to a logistic propensity in start (log pre_cost)
    miss_end = _draw(rng, _expit(-1.25 - 0.9 * (start - 5.0)), N_MISS_END)
    miss_cost = _draw(rng, _expit(-2.3 + 0.9 * (np.log(pre_cost) - 8.0)), N_MISS_COST)

    assert 0.20 <= miss_end.mean() <= 0.25, miss_end.mean()
    assert 0.08 <= miss_cost.mean() <= 0.12, miss_cost.mean()
    for s in STRATA:  # every stratum keeps all four cells among observed outcomes
        assert set(cell[(stratum == s) & ~miss_end]) == {0, 1, 2, 3}
        assert set(cell[(stratum == s) & ~miss_cost]) == {0, 1, 2, 3}

    def fmt(x: float, missing: bool = False) -> str:
        return "" if missing else f"{x:.17g}"

    lines = ["family,stratum,frame_shares,teaming,start,end,pre_cost,cost"]
    for i in range(N):
        lines.append(",".join([
            str(i + 1), stratum[i], str(fs[i]), str(tm[i]), fmt(start[i]),
            fmt(end[i], miss_end[i]), fmt(pre_cost[i]), fmt(cost[i], miss_cost[i]),
        ]))
    path = Path(__file__).with_name("mi_data.csv")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path} ({N} rows; end missing {miss_end.mean():.1%}, cost missing {miss_cost.mean():.1%})")


if __name__ == "__main__":
    main()
