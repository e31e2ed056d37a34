"""Reading an ``.npz`` archive completely and safely, for the file formats of the project.

Shared by :mod:`hssalg.io` (matrices) and :mod:`hssalg_nn.train` (checkpoints):
no pickle, every member read eagerly (zip members are read lazily, so a truncated
member would otherwise fail later, half way through building an object), and
every way a damaged file can fail mapped to one error of the caller's choosing.
"""

import zipfile
import zlib

import numpy as np

# NotImplementedError is zipfile's answer to a damaged compression-method field
_BAD_FILE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError)


def read_arrays(path, error, kind, tag, version):
    """Every array of a tagged archive at ``path``, as a dict, its tag and version checked.

    Parameters
    ----------
    path : str
    error : callable
        ``error(message) -> Exception`` builds the exception raised for a file
        that is not a readable archive.
    version : int or tuple of int
        The format version(s) the caller reads.

    Raises
    ------
    FileNotFoundError
        Unchanged, when there is no file.
    """
    try:
        content = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except _BAD_FILE as exc:
        raise error(f"not a readable .npz archive, truncated or corrupt ({exc})") from exc
    if isinstance(content, np.ndarray):
        raise error(f"not {kind} (a single .npy array, not an .npz archive)")
    try:
        with content:
            arrays = {key: content[key] for key in content.files}
    except _BAD_FILE as exc:
        raise error(f"not a readable .npz archive, truncated or corrupt ({exc})") from exc
    found = arrays.get("format")
    if found is None or found.shape != () or found.dtype.kind != "U" or str(found) != tag:
        raise error(f"not {kind} (no format tag {tag!r}; it holds arrays {sorted(arrays)[:8]})")
    found = arrays.get("version")
    if found is None or found.shape != () or found.dtype.kind not in "iu":
        raise error("the format version is missing or not an integer")
    versions = version if isinstance(version, tuple) else (version,)
    if int(found) not in versions:
        which = "version" if len(versions) == 1 else "versions"
        raise error(f"format version {int(found)}, but this version of the library reads {which} "
                    f"{', '.join(str(v) for v in versions)}")
    return arrays
