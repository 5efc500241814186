"""The vocabulary of an hbeval study: arms, cells, contrasts, groups, and the seed streams.

Every module names these things from here and nowhere else.

- **Arms.** The 2×2 factorial crosses the frame factor (:data:`FRAME_ARMS`) with the teaming
  factor (:data:`TEAMING_ARMS`).
- **Cells.** A family's cell has one encoding in computation, the ``int8`` code
  ``2·frame + teaming`` (:func:`cell_code`, :func:`arms_of`), and one in tables, the label
  ``"<frame_arm>/<teaming_arm>"`` (:data:`CELLS`, ordered by code: ``CELLS[code]``).
- **Contrasts.** The randomised contrasts of ``effects.csv`` (:data:`CONTRASTS`) and the
  non-randomised one (:data:`PILOT_VS_COMPARISON`).
- **Groups.** The ``group`` column of ``clients.csv`` (:data:`GROUPS`).
- **Seed streams.** One table, :data:`SEEDS`: a step draws from
  ``numpy.random.default_rng([study_seed, SEEDS[step]])``, so that no two steps share a stream
  and adding a step changes no other step's numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FRAME_ARMS: tuple[str, str] = ("frame_only", "frame_shares")
TEAMING_ARMS: tuple[str, str] = ("no_teaming", "teaming")
#: cell labels, indexed by cell code (``CELLS[2*frame + teaming]``)
CELLS: tuple[str, ...] = tuple(f"{f}/{t}" for f in FRAME_ARMS for t in TEAMING_ARMS)
N_CELLS = 4
REFERENCE_CELL = CELLS[0]

CONTRASTS_MAIN: tuple[str, str] = ("frame_shares", "teaming")
CONTRAST_INTERACTION = "frame_shares:teaming"
#: each cell against ``frame_only/no_teaming`` (inside the table)
CELL_CONTRASTS: tuple[str, ...] = tuple(f"cell:{c}" for c in CELLS[1:])
#: every randomised contrast, in the order of the tables
CONTRASTS: tuple[str, ...] = (*CONTRASTS_MAIN, CONTRAST_INTERACTION, *CELL_CONTRASTS)
PILOT_VS_COMPARISON = "pilot_vs_comparison"

GROUPS: tuple[str, str, str] = ("pilot", "comparison", "excluded")

#: sub-seed of each random step: ``default_rng([study seed, SEEDS[step]])``
SEEDS: dict[str, int] = {
    "balance_ri": 31,
    "ri": 4001,
    "attrition_bootstrap": 4002,
    "cost_bootstrap": 5101,
    "cost_difference_bootstrap": 5102,
    "cea_bootstrap": 5201,
    "rosi_bootstrap": 5301,
    "multiple_imputation": 4101,  # hbeval.outcomes.missing: chained-equations imputations (issue 15)
    "diagnose": 6001,
}


def cell_code(frame_arm: pd.Series, teaming_arm: pd.Series) -> np.ndarray:
    """Cell codes ``2·frame + teaming`` (``int8``) from the two arm columns."""
    f = (frame_arm.to_numpy() == "frame_shares").astype(np.int8)
    t = (teaming_arm.to_numpy() == "teaming").astype(np.int8)
    return 2 * f + t


def arms_of(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(frame_arm, teaming_arm)`` string arrays from cell codes."""
    codes = np.asarray(codes)
    frame = np.where(codes // 2 == 1, "frame_shares", "frame_only")
    team = np.where(codes % 2 == 1, "teaming", "no_teaming")
    return frame, team


def cell_label(codes: np.ndarray) -> np.ndarray:
    """Cell labels ``"<frame_arm>/<teaming_arm>"`` from cell codes."""
    return np.asarray(CELLS, dtype=object)[np.asarray(codes, dtype=np.int64)]
