"""Shared helpers: the `gfr` binary of the same checkout (for the CLI-equality tests), and NWB
fixtures."""

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def gfr_binary():
    """The `gfr` command built from this checkout: $GFR_BIN, else target/release/gfr in
    $CARGO_TARGET_DIR or the repository."""
    if os.environ.get("GFR_BIN"):
        return pathlib.Path(os.environ["GFR_BIN"])
    roots = [os.environ.get("CARGO_TARGET_DIR"), REPO / "target"]
    for root in roots:
        if root and (pathlib.Path(root) / "release" / "gfr").exists():
            return pathlib.Path(root) / "release" / "gfr"
    return None


@pytest.fixture(scope="session")
def cli():
    """Runs `gfr ARGS…` in a folder; returns the completed process (check=True by default)."""
    exe = gfr_binary()
    if exe is None:
        pytest.fail(
            "no gfr binary: build it with `cargo build --release` or set GFR_BIN "
            "(the CLI-equality tests need it)"
        )

    def run(*args, cwd, check=True):
        p = subprocess.run(
            [str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True
        )
        if check and p.returncode != 0:
            raise AssertionError(f"gfr {' '.join(map(str, args))} failed:\n{p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def nwb_dir(tmp_path_factory):
    """A folder with two cells' NWB 2 files ({id}.nwb) and their true spikes."""
    from nwb_fixture import write_nwb2

    d = tmp_path_factory.mktemp("nwb")
    truth = {
        601: write_nwb2(d / "601.nwb", seed=1),
        602: write_nwb2(d / "602.nwb", seed=2),
    }
    return d, truth


def same_files(a, b):
    """The relative paths under `a` and `b` whose bytes differ or that one lacks."""
    a, b = pathlib.Path(a), pathlib.Path(b)
    names = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names |= {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    return sorted(
        str(n)
        for n in names
        if not ((a / n).is_file() and (b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes())
    )
