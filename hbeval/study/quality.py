"""The data-quality ledger: every input row accepted, or rejected with file, row, column,
value and rule; counts go to ``results/data_quality.csv``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from hbeval.privacy import mask_identity_codes

EXAMPLES_PER_RULE = 20


def mask(value: object) -> str:
    """A value fit for a message: identity codes are masked, long values cut."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    s = mask_identity_codes(value)  # every form of a hetu (hbeval.privacy.find_identity_codes)
    return s if len(s) <= 60 else s[:57] + "..."


@dataclass
class FileEntry:
    table: str
    file: str
    rows_read: int
    rows_rejected: int = 0

    @property
    def rows_accepted(self) -> int:
        return self.rows_read - self.rows_rejected


@dataclass
class Ledger:
    files: dict[str, FileEntry] = field(default_factory=dict)
    notes: list[tuple[str, str, int]] = field(default_factory=list)  # file, message, rows
    #: (file, column, rule) -> count of offending cells
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: first examples per (file, column, rule): (row, value)
    examples: dict[tuple[str, str, str], list[tuple[int, str]]] = field(default_factory=dict)
    _direct: list[tuple[str, int, str, str, str]] = field(default_factory=list)

    # -- filled by ingestion
    def start_file(self, table: str, file: str, rows_read: int) -> None:
        self.files[file] = FileEntry(table, file, rows_read)

    def finish_file(self, file: str, rejected_rows: int) -> None:
        self.files[file].rows_rejected = int(rejected_rows)

    def note(self, file: str, message: str, rows: int) -> None:
        self.notes.append((file, message, int(rows)))

    def error(self, file: str, row: int, column: str, value: object, rule: str) -> None:
        self._direct.append((file, row, column, mask(value), rule))

    def collect(self, con) -> None:
        """Pull counts and examples of the error table ``_errs_all`` out of DuckDB."""
        for f, row, col, val, rule in self._direct:
            k = (f, col or "", rule)
            self.counts[k] = self.counts.get(k, 0) + 1
            self.examples.setdefault(k, []).append((row, val))
        rows = con.execute(
            """SELECT file, coalesce(col, ''), rule, count(*),
                      list(struct_pack(r := _row, v := val) ORDER BY _row)[1:?]
               FROM _errs_all GROUP BY ALL ORDER BY file, min(_row), rule""",
            [EXAMPLES_PER_RULE],
        ).fetchall()
        for f, col, rule, n, ex in rows:
            k = (f, col, rule)
            self.counts[k] = self.counts.get(k, 0) + int(n)
            self.examples.setdefault(k, []).extend((int(e["r"]), mask(e["v"])) for e in ex)

    # -- reading
    def has_errors(self) -> bool:
        return bool(self.counts)

    def n_errors(self) -> int:
        return sum(self.counts.values())

    def error_rows(self) -> list[tuple[str, int, str, str, str]]:
        """``(file, row, column, value, rule)`` examples, sorted by file and row."""
        out = [(f, r, c, v, rule) for (f, c, rule), ex in self.examples.items() for r, v in ex]
        return sorted(out, key=lambda t: (t[0], t[1], t[2], t[4]))

    def to_frame(self) -> pd.DataFrame:
        """``data_quality.csv``: one row per file and rule (a file without faults gets one
        row with rule ``none``). Counts are of records, not of families."""
        rows = []
        for f in sorted(self.files):
            e = self.files[f]
            base = {"file": f, "table": e.table, "rows_read": e.rows_read, "rows_accepted": e.rows_accepted,
                    "rows_rejected": e.rows_rejected}
            rules = sorted((k for k in self.counts if k[0] == f), key=lambda k: (k[1], k[2]))
            notes = [n for n in self.notes if n[0] == f]
            for _, col, rule in rules:
                rows.append({**base, "severity": "error", "column": col, "rule": rule, "count": self.counts[(f, col, rule)]})
            for _, msg, n in sorted(notes):
                rows.append({**base, "severity": "info", "column": "", "rule": msg, "count": n})
            if not rules and not notes:
                rows.append({**base, "severity": "ok", "column": "", "rule": "none", "count": 0})
        cols = ["file", "table", "rows_read", "rows_accepted", "rows_rejected", "severity", "column", "rule", "count"]
        return pd.DataFrame(rows, columns=cols)

    def summary(self, max_examples: int = 5) -> str:
        """A readable report for the terminal."""
        lines = []
        for f in sorted(self.files):
            e = self.files[f]
            mark = "ok " if not any(k[0] == f for k in self.counts) else "ERR"
            lines.append(f"[{mark}] {f}: {e.rows_read} rows read, {e.rows_accepted} accepted, {e.rows_rejected} rejected")
            for _, msg, _n in sorted(n for n in self.notes if n[0] == f):
                lines.append(f"      note: {msg}")
            for (ff, col, rule), n in sorted(self.counts.items()):
                if ff != f:
                    continue
                lines.append(f"      {n} × {rule}" + (f" (column {col})" if col else ""))
                for row, val in self.examples[(ff, col, rule)][:max_examples]:
                    where = f"file {f}, row {row}" + (f", column {col}" if col else "")
                    lines.append(f"        {where}: {val!r}")
        if self.has_errors():
            lines.append(f"{self.n_errors()} error(s): fix them and run `hbeval validate` again.")
        else:
            lines.append("No errors.")
        return "\n".join(lines)
