"""Scoring with the 80 % rule (contract: 4 of 5, 5 of 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbeval.study.scoring import score


def _m(rows):
    return pd.DataFrame(rows, columns=["client_id", "instrument", "timepoint", "item", "score"])


def test_kykyviisari_total_needs_four_of_five_and_excludes_overall_items():
    rows = [("a", "kykyviisari", "start", it, v) for it, v in
            [("osallisuus", 4), ("mieli", 6), ("arki", 8), ("taidot", 2), ("kokonaistilanne", 10), ("elamaan_tyytyvaisyys", 0)]]
    rows += [("b", "kykyviisari", "start", it, v) for it, v in [("osallisuus", 4), ("mieli", 6), ("arki", 8)]]
    s = score(_m(rows))
    assert s.loc["a", "kykyviisari_total_start"] == pytest.approx(5.0)  # 4 of 5 answered: mean of them
    assert np.isnan(s.loc["b", "kykyviisari_total_start"])  # 3 of 5: missing
    assert s.loc["a", "kykyviisari_kokonaistilanne_start"] == 10


def test_kompassi_needs_five_of_six_and_change_is_end_minus_start():
    items = ["tyoelama", "terveys", "psyykkinen_hyvinvointi", "arjen_hallinta", "talous", "osallisuus"]
    rows = [("a", "kompassi", "start", it, 2) for it in items[:5]]
    rows += [("a", "kompassi", "end", it, 3) for it in items]
    rows += [("b", "kompassi", "start", it, 2) for it in items[:4]]
    s = score(_m(rows))
    assert s.loc["a", "kompassi_total_start"] == 2 and s.loc["a", "kompassi_total_end"] == 3
    assert s.loc["a", "kompassi_total_change"] == 1
    assert np.isnan(s.loc["b", "kompassi_total_start"])
