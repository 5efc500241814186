"""The one atomic-output helper: ``--out`` folders that never delete what hbeval did not write.

Every command that writes a folder (``demo``, ``analyze``, ``report``, ``validate --out``)
builds it in a temporary folder beside the target and moves it into place. This module is the
only place that decides what may be replaced:

- an output folder carries hbeval's marker, :data:`MARKER`, a JSON file that lists every file
  hbeval wrote there;
- a target that is the study folder, inside it, or above it is refused, and so is the
  filesystem root and the user's home folder;
- an existing, non-empty folder without the marker is refused;
- a marked folder is replaced whole when it holds only hbeval's own files; when somebody put
  files of their own in it, only hbeval's listed files are replaced and the others stay.

Each refusal raises :class:`hbeval.errors.InputError` (exit 1) with a message that says why.
Temporary folders of a run that was killed are swept on the next run: each carries
:data:`TMP_MARKER` with its process id, and one whose process is gone is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hbeval.errors import InputError

MARKER = ".hbeval-output.json"
TMP_MARKER = ".hbeval-tmp"
_KIND = "hbeval output folder"


def _is_within(inner: Path, outer: Path) -> bool:
    """``inner`` equals ``outer`` or lies below it (both resolved)."""
    return inner == outer or outer in inner.parents


def check_out(out: str | Path, study: str | Path | None = None) -> Path:
    """Resolve ``out`` and refuse a target that could delete something hbeval did not write.

    Refused (``InputError``): the filesystem root or the home folder; the study folder itself,
    a folder inside it or above it; an existing path that is not a folder; an existing,
    non-empty folder that does not carry :data:`MARKER`.
    """
    raw = Path(out).expanduser()
    p = raw.resolve()
    if p == Path(p.anchor) or p == Path.home().resolve():
        raise InputError(f"--out {raw}: refusing to write into {p}, which is the filesystem root or your "
                         "home folder; name a new folder for the output")
    if study is not None:
        s = Path(study).resolve()
        if _is_within(p, s):
            where = "is the study folder" if p == s else f"is inside the study folder {s}"
            raise InputError(f"--out {raw}: {p} {where}; outputs go outside the study, for example "
                             f"{s.parent / (s.name + '-results')}")
        if _is_within(s, p):
            raise InputError(f"--out {raw}: {p} holds the study folder {s}; replacing it would delete the "
                             "study. Name a new folder outside the study")
    if p.is_symlink() or (p.exists() and not p.is_dir()):
        raise InputError(f"--out {raw}: {p} exists and is not a folder; name a new folder for the output")
    if p.is_dir() and not is_output(p) and any(x.name != TMP_MARKER for x in p.iterdir()):
        raise InputError(f"--out {raw}: {p} is a non-empty folder that hbeval did not write (no {MARKER}); "
                         "hbeval never replaces it. Name a new or empty folder")
    return p


def is_output(folder: Path) -> bool:
    """``folder`` carries a readable hbeval output marker."""
    return _own_files(folder) is not None


def _own_files(folder: Path) -> list[str] | None:
    """The relative paths the marker lists, or None when there is no valid marker."""
    m = folder / MARKER
    if not m.is_file() or m.is_symlink():
        return None
    try:
        doc = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") != _KIND or not isinstance(doc.get("files"), list):
        return None
    return [f for f in doc["files"] if isinstance(f, str)]


def _list_files(folder: Path) -> list[str]:
    """Every file below ``folder`` (links included, not followed), relative, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        r = Path(root)
        for name in files + [d for d in dirs if (r / d).is_symlink()]:
            found.append((r / name).relative_to(folder).as_posix())
    return sorted(f for f in found if f not in (MARKER, TMP_MARKER))


def mark(folder: Path) -> None:
    """Write the marker that lists every file now in ``folder`` as hbeval's own."""
    doc = {"kind": _KIND, "files": _list_files(folder)}
    (folder / MARKER).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _safe_rel(rel: str, folder: Path) -> Path | None:
    """``folder/rel`` when ``rel`` stays inside ``folder`` without following links, else None."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return None
    target = folder.joinpath(*parts)
    cur = folder
    for part in parts[:-1]:
        cur = cur / part
        if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
            return None
    return target


def replace_output(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` folder into place as ``final``.

    ``tmp`` is marked first. A missing or empty ``final`` is simply replaced. A marked
    ``final`` that holds only hbeval's listed files is swapped whole (the old one survives
    until the swap). A marked ``final`` with files of someone else keeps those files: only
    the listed ones are replaced. Anything else is refused (see :func:`check_out`).
    """
    final = Path(final)
    (tmp / TMP_MARKER).unlink(missing_ok=True)
    mark(tmp)
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return
    own = _own_files(final)
    if own is None:
        if final.is_dir() and not final.is_symlink() and not any(final.iterdir()):
            final.rmdir()
            os.replace(tmp, final)
            return
        raise InputError(f"{final} is not an hbeval output folder; it was left as it is")
    present = _list_files(final)
    if set(present) <= set(own):
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / "x")
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return
    _replace_own_files(tmp, final, own)


def _replace_own_files(tmp: Path, final: Path, own: list[str]) -> None:
    """Replace hbeval's listed files of ``final`` by ``tmp``'s, leaving every other file."""
    for rel in own:
        target = _safe_rel(rel, final)
        if target is not None and (target.is_file() or target.is_symlink()):
            target.unlink()
    written = _list_files(tmp)
    for rel in written:
        target = final / rel
        if target.exists() or target.is_symlink():
            continue  # a foreign file of the same name stays; ours is not written over it
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, target)
    for rel in sorted({str(Path(r).parent) for r in own if Path(r).parent != Path(".")}, key=len, reverse=True):
        d = _safe_rel(rel, final)
        with contextlib.suppress(OSError):
            if d is not None and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    doc = {"kind": _KIND, "files": [r for r in written if (final / r).exists()]}
    (final / MARKER).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(tmp, ignore_errors=True)


def sweep_stale(final: Path) -> None:
    """Remove temporary folders of earlier runs for ``final`` whose process is gone."""
    parent = final.parent
    if not parent.is_dir():
        return
    for d in parent.glob(f".{final.name}.tmp-*"):
        tag = d / TMP_MARKER
        if d.is_symlink() or not tag.is_file():
            continue
        try:
            pid = int(tag.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@contextlib.contextmanager
def building(out: str | Path, study: str | Path | None = None) -> Iterator[Path]:
    """Build an output folder atomically: ``with building(out, study) as tmp: ...``.

    Checks ``out`` (:func:`check_out`), sweeps stale temporary folders, yields a fresh
    temporary folder beside it and, when the block ends without an exception, moves it into
    place with :func:`replace_output`. On an exception the temporary folder is removed and
    ``out`` is untouched.
    """
    final = check_out(out, study)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        (tmp / TMP_MARKER).write_text(str(os.getpid()), encoding="ascii")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; an output folder is as any other
        yield tmp
        replace_output(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def update_output(out: str | Path, study: str | Path | None, tmp: Path, replace: str | None = None) -> None:
    """Merge the files of ``tmp`` into the output folder ``out`` in place.

    Used where part of an existing output folder is refreshed (a notebook's
    :meth:`hbeval.report.render.Report.open` recomputing ``results/``). ``out`` is checked as in
    :func:`check_out`. hbeval's own files under ``replace`` (a relative folder such as
    ``"results"``; None removes nothing) that ``tmp`` no longer has are removed; every file of ``tmp`` replaces
    hbeval's file of the same name. A file of someone else's is never written over: the
    update is refused before anything changes.
    """
    final = check_out(out, study)
    final.mkdir(parents=True, exist_ok=True)
    own = set(_own_files(final) or [])
    new = _list_files(tmp)
    clash = [r for r in new if r not in own and ((final / r).exists() or (final / r).is_symlink())]
    if clash:
        raise InputError(f"{final}: {clash[0]} was not written by hbeval; it was left as it is and nothing "
                         "was updated")
    prefix = None if replace is None else replace.strip("/") + "/"
    for rel in sorted(r for r in own if prefix and r.startswith(prefix) and r not in new):
        target = _safe_rel(rel, final)
        if target is not None and (target.is_file() or target.is_symlink()):
            target.unlink()
        own.discard(rel)
    for rel in new:
        target = _safe_rel(rel, final)
        if target is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, target)
        own.add(rel)
    doc = {"kind": _KIND, "files": sorted(own)}
    (final / MARKER).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


@contextlib.contextmanager
def updating(out: str | Path, study: str | Path | None, replace: str | None = None) -> Iterator[Path]:
    """``with updating(out, study, "results") as tmp: ...`` merges ``tmp`` into ``out`` at the
    end (:func:`update_output`); on an exception ``out`` is untouched."""
    final = check_out(out, study)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.part-", dir=final.parent))
    try:
        yield tmp
        update_output(final, study, tmp, replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
