"""Type hints of the gfr Python package (the functions are documented in their docstrings)."""

import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
CellIds = Union[Sequence[int], PathLike]
ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

def detect_spikes(
    voltage_mv: ArrayLike,
    rate_hz: float,
    *,
    dv_cutoff: float = 20.0,
    min_peak: float = -30.0,
    filter_khz: Optional[float] = 10.0,
) -> FloatArray: ...
def read_nwb(path: PathLike) -> List[Dict[str, Any]]: ...
def simulate(
    cells: int = 8,
    seed: int = 0,
    data_dir: PathLike = "data",
    *,
    truth: Literal["adex", "gfr"] = "adex",
    first_id: int = 900000001,
    overwrite: bool = False,
    nwb_dir: Optional[PathLike] = None,
    progress: bool = True,
) -> List[int]: ...
def preprocess(
    cell_ids: Optional[CellIds],
    nwb_dir: PathLike,
    data_dir: PathLike = "data",
    *,
    metadata: Optional[PathLike] = None,
    progress: bool = True,
) -> List[Dict[str, Any]]: ...
def fit(
    cell_ids: Optional[CellIds] = None,
    *,
    data_dir: PathLike = "data",
    config: Union[Literal["default", "thorough", "test"], PathLike, Dict[str, Any], None] = "default",
    bin_size: int = 20,
    activation_bin_size: int = 20,
    save_path: PathLike = "model/params",
    device: Literal["cpu", "wgpu"] = "cpu",
    batch_cells: int | None = None,
    resume: bool = False,
    progress: bool = True,
    degree: int = 1,
    C: float = 0.0,
    seed: int = 0,
    shard: Optional[Tuple[int, int]] = None,
) -> List[Dict[str, Any]]: ...

class Neuron:
    def __init__(self, params: Dict[str, Any]) -> None: ...
    def predict(self, current_pa: ArrayLike) -> FloatArray: ...
    @property
    def params(self) -> Dict[str, Any]: ...
    @property
    def bin_size(self) -> int: ...

def load_dataset(path: PathLike = "model/gfr_dataset.pickle") -> Dict[Tuple[int, int], Any]: ...
def build_dataset(
    params_dir: Union[PathLike, Sequence[PathLike], None] = "model/params",
    out: PathLike = "model/gfr_dataset.pickle",
    *,
    json: Optional[PathLike] = None,
    metadata: Optional[PathLike] = None,
    overwrite: bool = False,
    min_val_evr: float = 0.5,
    max_train_loss: float = 0.45,
    allow_missing: bool = False,
) -> Dict[str, Any]: ...
def load_gfr_model(
    dataset: PathLike, cell_id: int, bin_size: int = 20, activation_bin_size: int = 20
) -> Neuron: ...
def run_network(
    *,
    lr: float = 1e-3,
    lr_schedule: Literal["anneal", "constant"] = "anneal",
    epochs: int = 30,
    batch_size: int = 64,
    n_nodes: int = 128,
    freeze_neurons: bool = False,
    freeze_activations: bool = False,
    neurons: str = "default",
    dataset: PathLike = "model/gfr_dataset.pickle",
    bio_pair: Union[Tuple[int, int], str] = (20, 20),
    bio_input: Literal["relative", "published"] = "relative",
    bio_units: Optional[Literal["relative", "physical"]] = None,
    shuffle_neurons: bool = False,
    model: Literal["gfr", "rnn", "lstm"] = "gfr",
    mnist_dir: PathLike = "data/mnist",
    history_scale: float = ...,
    diagnose: bool = False,
    offline: bool = False,
    train_limit: Optional[int] = None,
    test_limit: Optional[int] = None,
    device: Literal["cpu", "wgpu"] = "cpu",
    seed: int = 0,
    save_dir: PathLike = "model/network_params",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Optional[Dict[str, Any]]: ...
