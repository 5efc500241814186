"""The 2×2 factorial design: cells, batch assignment within strata, and re-randomisation.

Cell codes are used throughout: ``code = 2 * frame_shares + teaming``, so

====  ============  ===========
code  frame_arm     teaming_arm
====  ============  ===========
0     frame_only    no_teaming
1     frame_only    teaming
2     frame_shares  no_teaming
3     frame_shares  teaming
====  ============  ===========

Batch assignment is complete randomisation of the four cells within each stratum. A stratum
whose size is not a multiple of four ("misfits") gets ``n // 4`` families in every cell and
its ``n % 4`` remaining families go to distinct cells drawn at random, randomizr's rule,
so that every family's probability of every cell is exactly 1/4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FRAME_ARMS = ("frame_only", "frame_shares")
TEAMING_ARMS = ("no_teaming", "teaming")
CELLS = tuple(f"{f}/{t}" for f in FRAME_ARMS for t in TEAMING_ARMS)
N_CELLS = 4


def cell_code(frame_arm: pd.Series, teaming_arm: pd.Series) -> np.ndarray:
    """Cell codes from the two arm columns."""
    f = (frame_arm.to_numpy() == "frame_shares").astype(np.int8)
    t = (teaming_arm.to_numpy() == "teaming").astype(np.int8)
    return 2 * f + t


def arms_of(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(frame_arm, teaming_arm)`` string arrays from cell codes."""
    codes = np.asarray(codes)
    frame = np.where(codes // 2 == 1, "frame_shares", "frame_only")
    team = np.where(codes % 2 == 1, "teaming", "no_teaming")
    return frame, team


def stratum_labels(clients: pd.DataFrame, strata: list[str] | tuple[str, ...]) -> pd.Series:
    """A text label per family, e.g. ``"Hämeenlinna|family_work"`` (``"all"`` with no strata)."""
    if not strata:
        return pd.Series("all", index=clients.index, dtype=object)
    parts = [clients[s].astype(object).where(clients[s].notna(), "(missing)").astype(str) for s in strata]
    lab = parts[0]
    for p in parts[1:]:
        lab = lab + "|" + p
    return lab.astype(object)


def draw_batch(clients: pd.DataFrame, strata: list[str] | tuple[str, ...], seed: int) -> pd.DataFrame:
    """Assign every row of ``clients`` to a cell, completely randomised within strata.

    The result does not depend on the row order of ``clients``: families are sorted by
    ``client_id`` within strata, and strata are taken in sorted order, before the seeded
    generator is used.

    Returns
    -------
    DataFrame with ``client_id``, ``frame_arm``, ``teaming_arm``, ``stratum``, ``cell``
    (the code), sorted by ``client_id``.
    """
    df = pd.DataFrame({"client_id": clients["client_id"].astype(str).to_numpy()})
    df["stratum"] = stratum_labels(clients, strata).to_numpy()
    df = df.sort_values(["stratum", "client_id"], kind="mergesort").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    codes = np.empty(len(df), dtype=np.int8)
    for lab, idx in df.groupby("stratum", sort=True).indices.items():
        codes[idx] = _one_block(len(idx), rng)
    df["cell"] = codes
    frame, team = arms_of(codes)
    df["frame_arm"] = frame
    df["teaming_arm"] = team
    return df.sort_values("client_id", kind="mergesort").reset_index(drop=True)[
        ["client_id", "frame_arm", "teaming_arm", "stratum", "cell"]
    ]


def _one_block(n: int, rng: np.random.Generator) -> np.ndarray:
    base, r = divmod(n, N_CELLS)
    pattern = np.concatenate([np.tile(np.arange(N_CELLS, dtype=np.int8), base), rng.permutation(N_CELLS)[:r].astype(np.int8)])
    return rng.permutation(pattern)


def batch_draws(stratum: np.ndarray | pd.Series, n_draws: int, seed: int | np.random.Generator) -> np.ndarray:
    """Vectorised re-randomisation under the batch procedure.

    Parameters
    ----------
    stratum : array of labels, one per family (in any order)
    n_draws : number of assignments to draw
    seed : seed or generator

    Returns
    -------
    ``int8`` array of shape ``(n_draws, n_families)`` of cell codes, each row one
    assignment drawn exactly as :func:`draw_batch` draws (within strata, misfit rule).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lab = pd.Series(np.asarray(stratum)).astype(str)
    out = np.empty((n_draws, len(lab)), dtype=np.int8)
    for _, idx in lab.groupby(lab, sort=True).indices.items():
        n = len(idx)
        base, r = divmod(n, N_CELLS)
        block = np.empty((n_draws, n), dtype=np.int8)
        block[:, : base * N_CELLS] = np.tile(np.arange(N_CELLS, dtype=np.int8), base)
        if r:
            block[:, base * N_CELLS :] = rng.permuted(np.tile(np.arange(N_CELLS, dtype=np.int8), (n_draws, 1)), axis=1)[:, :r]
        out[:, idx] = rng.permuted(block, axis=1)
    return out
