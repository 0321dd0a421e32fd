"""The one atomic-write helper: a file appears under its name whole, or not at all."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from brainsets_kedro.io.leftovers import atomic_temporary, check_output_name


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` all at once or not at all.

    Yields a temporary path in the same directory, hidden and not ending in the
    output's suffix (``.~bk.3f2a9c1b.sess_01.h5.tmp``, which a ``*.h5`` glob does not
    list); write the file there. When the block ends, the file is renamed to ``path``
    in one step; if the block raises, the temporary file is removed and ``path`` is
    left as it was. So a crash, a kill or Ctrl-C never leaves a half-written file
    under its final name, and a later run that skips existing outputs never skips a
    broken one. A temporary that a kill left behind is removed by the brainset's next
    run. Writers that choose the format by the file name's suffix need it given
    explicitly (``fig.savefig(tmp, format="png")``)::

        with atomic_write(self.processed_dir / "sess_01.h5") as tmp:
            with h5py.File(tmp, "w") as file:
                data.to_hdf5(file)

    Args:
        path: the file to write.

    Yields:
        The temporary path to write instead.

    Raises:
        FileNotFoundError: the block wrote nothing at the temporary path (naming
            what it wrote instead, when a writer appended its own suffix).
        ValueError: ``path``'s name starts with ``.~bk.``, which temporary names
            start with (see :mod:`brainsets_kedro.io.leftovers`).
    """
    path = Path(path)
    check_output_name(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_temporary(path)
    try:
        yield tmp
        if not tmp.exists():
            elsewhere = sorted(p.name for p in path.parent.glob(f"{tmp.name}.*"))
            for name in elsewhere:
                (path.parent / name).unlink(missing_ok=True)
            hint = (
                f"; the writer added a suffix and wrote {', '.join(elsewhere)}: "
                f"give it an open file or the format explicitly"
                if elsewhere
                else ""
            )
            raise FileNotFoundError(
                f"atomic_write({path}): nothing was written to the temporary path "
                f"{tmp}{hint}"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
