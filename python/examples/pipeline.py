"""From NWB files to fitted GFR neurons to predicted rates.

    python python/examples/pipeline.py NWB_DIR CELL_ID [CELL_ID ...]

NWB_DIR holds `{id}.nwb` or `specimen_{id}/ephys.nwb` (NWB 1 or 2); everything is written under
./gfr-pipeline/.
"""
import pathlib
import sys

import numpy as np

import gfr

nwb_dir, ids = sys.argv[1], [int(x) for x in sys.argv[2:]]
first = pathlib.Path(nwb_dir, f"{ids[0]}.nwb")
if not first.exists():
    first = pathlib.Path(nwb_dir, f"specimen_{ids[0]}", "ephys.nwb")  # the Allen SDK's layout
sweeps = gfr.read_nwb(first)                                      # one dict per sweep
print(f"cell {ids[0]}: {len(sweeps)} sweeps, {sum(len(s['spike_times_s']) for s in sweeps)} spikes")
gfr.preprocess(ids, nwb_dir, data_dir="gfr-pipeline/data")      # binned traces per cell
reports = gfr.fit(ids, data_dir="gfr-pipeline/data", save_path="gfr-pipeline/params")
for r in reports:
    print(f"cell {r['cell_id']}: {r['status']}, validation EVR {r['val_evr']}")
# every fitted cell, whatever its EVR and loss (the defaults keep val EVR > 0.5, loss < 0.45)
gfr.build_dataset(
    "gfr-pipeline/params", "gfr-pipeline/dataset.pickle", min_val_evr=0.0, max_train_loss=float("inf")
)
fitted = [r["cell_id"] for r in reports if r["status"] == "saved"]
if not fitted:
    sys.exit("no cell was fitted: see the messages above")
neuron = gfr.load_gfr_model("gfr-pipeline/dataset.pickle", fitted[0], bin_size=20)
threshold = neuron.params["g"]["b"][0]  # the activation's threshold b (pA)
step = np.concatenate([np.zeros(25), np.full(50, 1.5 * threshold), np.zeros(25)])  # pA per bin
print(f"cell {fitted[0]}: rate (spikes/ms) per bin:", np.round(neuron.predict(step), 3))
