"""From NWB files to fitted GFR neurons to predicted rates.

    python examples/pipeline.py NWB_DIR CELL_ID [CELL_ID ...]

NWB_DIR holds `{id}.nwb` or `specimen_{id}/ephys.nwb` (NWB 1 or 2); everything is written under
./gfr-pipeline/.
"""
import sys

import numpy as np

import gfr

nwb_dir, ids = sys.argv[1], [int(x) for x in sys.argv[2:]]
sweeps = gfr.read_nwb(f"{nwb_dir}/{ids[0]}.nwb")                 # one dict per sweep
print(f"cell {ids[0]}: {len(sweeps)} sweeps, {sum(len(s['spike_times_s']) for s in sweeps)} spikes")
gfr.preprocess(ids, nwb_dir, data_dir="gfr-pipeline/data")      # binned traces per cell
reports = gfr.fit(ids, data_dir="gfr-pipeline/data", save_path="gfr-pipeline/params")
for r in reports:
    print(f"cell {r['cell_id']}: {r['status']}, validation EVR {r['val_evr']}")
gfr.build_dataset("gfr-pipeline/params", "gfr-pipeline/dataset.pickle", min_val_evr=0.0)
neuron = gfr.load_gfr_model("gfr-pipeline/dataset.pickle", ids[0], bin_size=20)
step = np.concatenate([np.zeros(25), np.full(50, 150.0), np.zeros(25)])  # pA per 20 ms bin
print("rate (spikes/ms) per bin:", np.round(neuron.predict(step), 3))
