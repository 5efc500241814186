"""Write tests/R/fixture_data.csv: the family-level analysis data the R script reads.

Run from the repository root: ``.venv/bin/python tests/R/make_fixture_data.py``. The data are
the pilot families of ``hbeval.demo.simulate_families(400, 0, seed=20261122)`` with the
Kykyviisari total scored by the 80 % rule, complete cases only (what the ANCOVA uses), plus a
deterministic analytic weight ``w`` for the weighted-HC2 check and a 0/1 outcome ``event``.
Floats are written with 17 significant digits so R reads exactly the same numbers.
"""

from pathlib import Path

import numpy as np

from hbeval.demo import simulate_families
from hbeval.stats.ols import drop_singleton_strata

ITEMS = ("osallisuus", "mieli", "arki", "taidot", "keho")


def main() -> None:
    f = simulate_families(400, 0, seed=20261122)
    f = f[f["group"] == "pilot"].sort_values("client_id").reset_index(drop=True)

    def total(tp: str) -> np.ndarray:
        m = f[[f"kyky_{i}_{tp}" for i in ITEMS]]
        return m.mean(axis=1).where(m.notna().sum(axis=1) >= 4).to_numpy()

    out = f[["stratum"]].copy()
    out["frame_shares"] = (f["frame_arm"] == "frame_shares").astype(int)
    out["teaming"] = (f["teaming_arm"] == "teaming").astype(int)
    out["end"] = total("end")
    out["start"] = total("start")
    rng = np.random.default_rng([20261122, 77])
    out["w"] = rng.uniform(0.5, 2.0, len(out))
    out["event"] = (rng.random(len(out)) < 0.15 + 0.1 * out["teaming"]).astype(int)
    ok = out["end"].notna().to_numpy() & out["start"].notna().to_numpy()
    ok = drop_singleton_strata(ok, out["stratum"].to_numpy())
    out = out[ok].reset_index(drop=True)
    path = Path(__file__).with_name("fixture_data.csv")
    out.to_csv(path, index=False, float_format="%.17g", lineterminator="\n")
    print(f"wrote {path} ({len(out)} rows)")


if __name__ == "__main__":
    main()
