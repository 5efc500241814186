"""ROSI sentences never give a verdict on an undefined ROSI."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hbeval.report.narrative import rosi_sentences


def test_undefined_rosi_says_why_and_gives_no_verdict():
    rosi = pd.DataFrame({"comparison": ["teaming vs no_teaming", "pilot vs comparison"], "rosi": [np.nan, -0.5],
                         "ci_low": [np.nan, -0.8], "ci_high": [np.nan, -0.2], "intervention_cost_eur": [-10.0, 5000.0],
                         "avoided_cost_eur": [100.0, 2500.0],
                         "rosi_note": ["the extra intervention cost is not positive", ""]})
    en = rosi_sentences(rosi, "en")
    assert "not defined" in en[0] and "not positive" in en[0] and "exceed" not in en[0]
    assert "do not pay back" in en[1]
    fi = rosi_sentences(rosi, "fi")
    assert "ei määriteltävissä" in fi[0]
