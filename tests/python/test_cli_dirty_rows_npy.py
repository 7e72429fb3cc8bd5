"""`ckpt put --dirty-rows NAME=@FILE` with .npy files as NumPy itself writes
them (numpy.save and numpy.lib.format.write_array, format versions 1.0, 2.0
and 3.0, every integer dtype in both byte orders), through the real CLI and
a real ckpt-server: each delta stores exactly the listed rows and `ckpt get`
restores the table byte-identical. Arrays that are not 1-D integers (floats,
2-D, 0-d, pickled objects, structured records) are refused before anything
is saved; the C++ tests (client/cli/row_list_file_test.cc,
tests/integration/delta_cli_test.cc) cover hand-made and hostile bytes."""

import json
import os
import subprocess

import numpy as np
import pytest

ROWS = 65536
ROW_BYTES = 16
JOB = "npy/table"


def ckpt(server, *args):
    return subprocess.run(
        [os.path.join(os.environ["CKPT_BUILD_DIR"], "client", "ckpt"),
         "--server", server, *map(str, args)],
        capture_output=True, text=True)


def ckpt_json(server, *args):
    done = ckpt(server, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write_npy(path, array, version):
    with open(path, "wb") as out:
        np.lib.format.write_array(out, array, version=version,
                                  allow_pickle=False)


@pytest.fixture
def base(server, tmp_path):
    """Step 1 of JOB: a table of random bytes, saved in full."""
    table = np.random.default_rng(7).integers(
        0, 256, size=(ROWS, ROW_BYTES), dtype=np.uint8)
    path = tmp_path / "table.bin"
    table.tofile(path)
    ckpt_json(server, "put", JOB, 1, path, "--row-bytes", ROW_BYTES)
    return table, path


def test_numpy_written_npy_of_every_integer_dtype_and_version(
        server, tmp_path, base):
    table, path = base
    rng = np.random.default_rng(11)
    cases = [(dtype, (1, 0)) for dtype in (
        "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8",
        ">i2", ">i4", ">i8", ">u2", ">u4", ">u8")]
    cases += [("<i8", (2, 0)), ("<i8", (3, 0)), (">u4", (2, 0)),
              (">u2", (3, 0))]
    step = 1
    for dtype, version in cases:
        step += 1
        limit = min(ROWS, np.iinfo(np.dtype(dtype)).max + 1)
        # Scattered, unsorted, some twice: 40,000 draws where the dtype
        # reaches that far (more than fit in one argument as text).
        listed = rng.integers(0, limit, size=min(40000, limit // 2))
        changed = table.copy()
        changed[listed] ^= 0x5A
        changed.tofile(path)
        rows_npy = tmp_path / f"rows_{step}.npy"
        write_npy(rows_npy, listed.astype(dtype), version)
        put = ckpt_json(server, "put", JOB, step, path, "--row-bytes",
                        ROW_BYTES, "--delta-against", step - 1,
                        "--dirty-rows", f"table.bin=@{rows_npy}")
        case = f"{dtype} version {version}"
        assert put["deltas"][0]["rows"] == len(np.unique(listed)), case
        assert put["deltas"][0]["rows_from"] == "dirty-rows", case
        out = tmp_path / f"restored_{step}"
        done = ckpt(server, "get", JOB, step, out)
        assert done.returncode == 0, done.stderr
        assert (out / "table.bin").read_bytes() == changed.tobytes(), case
        table = changed


def test_numpy_arrays_that_are_not_row_lists_are_refused(
        server, tmp_path, base):
    _, path = base
    refused = {
        "floats.npy": (np.array([1.0, 2.0]),
                       "it holds dtype '<f8': row indices must be integers"),
        "bools.npy": (np.array([True]), "it holds dtype '|b1'"),
        "matrix.npy": (np.zeros((3, 2), dtype=np.int64),
                       "it holds a 2-D array of shape (3, 2)"),
        "fortran.npy": (np.asfortranarray(np.zeros((2, 3), dtype=np.int64)),
                        "it holds a 2-D array of shape (2, 3)"),
        "scalar.npy": (np.int64(4), "it holds a 0-D array of shape () "
                                    "(a scalar)"),
        "records.npy": (np.zeros(2, dtype=[("row", "<i8")]),
                        "a structured dtype (a list of fields)"),
        "negative.npy": (np.array([5, -1], dtype=np.int16),
                         "element 1 (from 0): -1 is negative, not a row "
                         "index"),
        "far.npy": (np.array([ROWS], dtype=np.uint32),
                    f"element 0 (from 0): row {ROWS} is past its last row "
                    f"(it has {ROWS} rows)"),
    }
    for name, (array, message) in refused.items():
        np.save(tmp_path / name, array)
    # A pickled object array: its bytes must never be unpickled.
    np.save(tmp_path / "objects.npy", np.array([1, "x"], dtype=object),
            allow_pickle=True)
    refused["objects.npy"] = (None, "it holds dtype '|O'")
    for name, (_, message) in refused.items():
        done = ckpt(server, "put", JOB, 2, path, "--row-bytes", ROW_BYTES,
                    "--delta-against", 1, "--dirty-rows",
                    f"table.bin=@{tmp_path / name}")
        assert done.returncode != 0, name
        assert done.stderr.startswith(
            f"ckpt: INVALID_ARGUMENT: --dirty-rows table.bin: "
            f"'{tmp_path / name}'"), done.stderr
        assert message in done.stderr, (name, done.stderr)
    assert [c["step"] for c in ckpt_json(server, "ls", JOB, "--all")] == [1]
