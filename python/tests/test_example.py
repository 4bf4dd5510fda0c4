"""examples/pipeline.py runs as the README says, on NWB files it has never seen."""

import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "pipeline.py"


def test_the_pipeline_example_runs(nwb_dir, tmp_path):
    d, _ = nwb_dir
    p = subprocess.run(
        [sys.executable, str(EXAMPLE), str(d), "601", "602"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert p.returncode == 0, p.stderr
    assert "cell 601: saved" in p.stdout and "cell 602: saved" in p.stdout
    assert "rate (spikes/ms) per bin:" in p.stdout
    assert (tmp_path / "gfr-pipeline" / "dataset.pickle").exists()
