"""gfr: Generalized Firing Rate neurons, fitted to patch-clamp recordings and trained in
networks, from Python.

A thin layer over the gfr Rust library (the same code as the ``gfr`` command line, with the
same numbers): NWB reading and IPFX's spike detector, preprocessing, fitting one GFR neuron per
cell, the dataset of fitted neurons, and networks of GFR neurons on line-by-line MNIST.
Arrays go in and out as numpy float64 arrays; long calls show one updating progress line
(``progress=False`` silences it), release the GIL, and stop on Ctrl-C within about a second,
leaving what ``resume=True`` goes on from.

Example::

    import gfr
    ids = gfr.simulate(cells=4, data_dir="data")
    reports = gfr.fit(ids, data_dir="data", save_path="model/params")
    gfr.build_dataset("model/params", "model/gfr_dataset.pickle")
    neuron = gfr.load_gfr_model("model/gfr_dataset.pickle", ids[0])
    rates = neuron.predict([0.0] * 50 + [200.0] * 100)
"""

from ._gfr import (
    Neuron,
    __version__,
    build_dataset,
    detect_spikes,
    fit,
    load_gfr_model,
    preprocess,
    read_nwb,
    run_network,
    simulate,
)
from ._gfr import _dataset_records

__all__ = [
    "Neuron",
    "__version__",
    "build_dataset",
    "detect_spikes",
    "fit",
    "load_dataset",
    "load_gfr_model",
    "preprocess",
    "read_nwb",
    "run_network",
    "simulate",
]


def load_dataset(path="model/gfr_dataset.pickle"):
    """The dataset of fitted neurons (a dataset pickle written by ``gfr dataset build`` or
    :func:`build_dataset`), checked by gfr's reader.

    Returns ``{(bin_size, activation_bin_size): pandas.DataFrame}`` with one row per cell
    (columns ``cell_id``, ``cre-line``, ``val_evr``, ``test_evr``, ``train_loss``, ``params``,
    ...), or a list of record dicts per pair when pandas is not installed.
    """
    records = _dataset_records(path)
    try:
        import pandas
    except ImportError:
        return records
    return {pair: pandas.DataFrame(rows) for pair, rows in records.items()}
