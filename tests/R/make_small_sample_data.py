"""Write tests/R/small_sample_data.csv: small synthetic 2x2 factorial trials for the HC2 +
Bell-McCaffrey (Satterthwaite) degrees-of-freedom fixture.

Run from the repository root: ``python3 tests/R/make_small_sample_data.py`` (numpy only; no
hbeval import, so it runs in any Python with numpy). Then ``Rscript
tests/R/clubsandwich_fixtures.R`` writes ``clubsandwich_expected.csv`` from it.

Datasets (column ``dataset``):

=======  ==  ======================  =========
dataset  n   stratum sizes           weights
=======  ==  ======================  =========
1        12  4, 4, 4                 none (w = 1)
2        16  4, 6, 6                 none (w = 1)
3        24  5, 6, 6, 7              none (w = 1)
4        40  8, 10, 10, 12           none (w = 1)
5        40  8, 10, 10, 12           analytic ``w`` in [0.5, 2]
=======  ==  ======================  =========

Within each stratum the four cells of the 2x2 design (``frame_shares`` x ``teaming``) are each
assigned once (a permuted block) and the remaining families get a random cell, so every stratum
holds all four cells. ``start`` is a baseline score on a 0-10-like scale, ``end`` = linear in
start + arm effects + stratum effect + heteroskedastic normal error (the error sd grows with
|start - 5| and with teaming). Floats are written with 17 significant digits so R reads exactly
the same numbers. The seed is fixed, so the file is reproducible byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 20261126
DESIGNS = {
    1: ((4, 4, 4), False),
    2: ((4, 6, 6), False),
    3: ((5, 6, 6, 7), False),
    4: ((8, 10, 10, 12), False),
    5: ((8, 10, 10, 12), True),
}
STRATUM_NAMES = ("east", "north", "south", "west")
STRATUM_EFFECT = (0.0, 0.4, -0.3, 0.2)


def make_dataset(rng: np.random.Generator, sizes: tuple[int, ...], weighted: bool) -> list[dict]:
    rows: list[dict] = []
    for s, m in enumerate(sizes):
        cells = np.concatenate([rng.permutation(4), rng.integers(0, 4, m - 4)])
        cells = rng.permutation(cells)
        for cell in cells:
            fs, tm = int(cell // 2), int(cell % 2)
            start = float(np.clip(rng.normal(5.0, 1.2), 0.0, 10.0))
            sd = 0.3 + 0.25 * abs(start - 5.0) + 0.3 * tm
            end = (2.0 + 0.6 * start + 0.3 * fs + 0.4 * tm - 0.2 * fs * tm
                   + STRATUM_EFFECT[s] + sd * rng.normal())
            w = float(rng.uniform(0.5, 2.0)) if weighted else 1.0
            rows.append({"end": end, "start": start, "frame_shares": fs, "teaming": tm,
                         "stratum": STRATUM_NAMES[s], "w": w})
    return rows


def check(rows: list[dict]) -> None:
    strata = sorted({r["stratum"] for r in rows})
    for s in strata:
        cells = {2 * r["frame_shares"] + r["teaming"] for r in rows if r["stratum"] == s}
        assert cells == {0, 1, 2, 3}, (s, cells)


def main() -> None:
    rng = np.random.default_rng(SEED)
    path = Path(__file__).with_name("small_sample_data.csv")
    lines = ["dataset,family,stratum,frame_shares,teaming,start,end,w"]
    for ds, (sizes, weighted) in DESIGNS.items():
        rows = make_dataset(rng, sizes, weighted)
        check(rows)
        for i, r in enumerate(rows, start=1):
            lines.append(f"{ds},{i},{r['stratum']},{r['frame_shares']},{r['teaming']},"
                         f"{r['start']:.17g},{r['end']:.17g},{r['w']:.17g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(lines) - 1} rows, {len(DESIGNS)} datasets)")


if __name__ == "__main__":
    main()
