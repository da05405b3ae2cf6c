"""Ray Tune's own snapshot of an experiment, checked before `search --resume` hands it to Ray.

Why: `Tuner.restore` unpickles tuner.pkl and loads the newest experiment state, search-generator,
searcher and callback files. Ray writes tuner.pkl without a temp file (a kill during that write
leaves it cut short: ray#58179) and overwrites its JSON snapshot in place, so these files get
damaged as ours do; Ray then fails with an EOFError or a JSONDecodeError from deep inside
`restore`, after our files were read and a Ray was started. Checked here first, such a file is
one line naming it (exit 2), like a damaged file of ours, and the experiment stays as it was.

The check is structural: whole JSON, a whole pickle stream (opcodes walked, nothing unpickled, so
no code from the file runs). It does not replace Ray's own loading, which still decides whether
the contents make sense.
"""

from __future__ import annotations

from dnet_tune.errors import UserError
from dnet_tune.tune import ray_internals, storage

REMEDY = (f"{storage.RESTORE}; it is Ray Tune's snapshot of the experiment, which the resume "
          f"needs (our tables and studies are whole: 'dnet-tune report' still reads them)")


def check(exp: str) -> None:
    """Raise a `DamagedFile` naming the first of Ray's restore files that would not load."""
    files = ray_internals.snapshot_files()
    tuner_pkl = files[0][0]  # listed first: the file every restore starts from
    if not storage.exists(storage.join(exp, tuner_pkl)):
        raise UserError(f"'{exp}' has no {tuner_pkl} (Ray Tune writes it as the trials start; "
                        f"a search stopped before that has none), so Ray cannot resume it; "
                        f"{storage.RESTORE}, or start the search again with a new --name")
    for pattern, kind in files:
        names = storage.list_files(exp, pattern)
        if not names:
            continue
        newest = storage.join(exp, max(names))  # the one Ray restores from
        if kind == "json":
            storage.read_json(newest, REMEDY)
        else:
            storage.check_pickle(newest, REMEDY)
