//! Files written by Python's `pickle` (plain lists / dicts / floats) are read.

mod common;
use common::*;

#[test]
fn reads_processed_data_and_results_written_by_python() {
    let Some(py) = python() else {
        eprintln!("SKIPPED reads_processed_data_and_results_written_by_python: python3 not found");
        return;
    };
    let dir = scratch("pyread");
    let script = format!(
        r#"
import pickle, os
d = '{d}'
os.makedirs(d + '/processed_data'); os.makedirs(d + '/max_firing_rates')
sweeps = [{{'stimulus_name': 'Noise 1', 'current': {{10: [1.0, 2.0], 20: [1.5]}}, 'firing_rate': {{10: [0.0, 0.1], 20: [0.05]}}}}]
for proto in (0, 1, 2, 3, 4, 5):
    pickle.dump(sweeps, open(d + '/processed_data/processed_I_and_firing_rate_%d.pickle' % proto, 'wb'), protocol=proto)
    pickle.dump(0.25, open(d + '/max_firing_rates/%d.pickle' % proto, 'wb'), protocol=proto)
res = {{'params': {{'a': [[8.0] + [0.0]*7], 'b': [[0.0]*8], 'ds': [1.0, 0.63, 0.39, 0.18, 0.095, 0.039, 0.0198, 0.00995], 'bin_size': 20,
        'g': {{'max_current': [200.0], 'max_firing_rate': [0.3], 'poly_coeff': [[0.1, 1.2]], 'b': [30.0], 'bin_size': 20}}}},
       'evr1': 0.7, 'evr2': 0.65, 'train_losses': [0.5, 0.4], 'test_losses': [0.6, 0.5], 'bin_size': 20}}
pickle.dump(res, open(d + '/result.pickle', 'wb'), protocol=4)
"#,
        d = s(&dir)
    );
    run_python(py, &script);
    let data = gfr::data::DataDir::new(&dir);
    for proto in [0, 1, 2, 3, 4, 5] {
        let cell = gfr::data::CellRecording::load(&data, proto).unwrap();
        assert_eq!(cell.sweeps[0].current[&10], vec![1.0, 2.0]);
        assert_eq!(cell.sweeps[0].firing_rate[&20], vec![0.05]);
        assert_eq!(cell.max_firing_rate, 0.25);
    }
    let r = gfr::fit::FitResult::load(&dir.join("result.pickle")).unwrap();
    assert_eq!(r.params.alpha[0], 8.0);
    assert_eq!(r.params.activation.poly_coeff, vec![0.1, 1.2]);
    assert_eq!(r.evr2, 0.65);
    std::fs::remove_dir_all(dir).unwrap();
}

/// numpy-using Python writes numpy scalars and arrays: they are read as numbers and lists.
#[test]
fn reads_numpy_scalars_and_arrays() {
    let Some(py) = python() else {
        eprintln!("SKIPPED reads_numpy_scalars_and_arrays: python3 not found");
        return;
    };
    let has_numpy = std::process::Command::new(py)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_numpy {
        eprintln!("SKIPPED reads_numpy_scalars_and_arrays: numpy not installed");
        return;
    }
    let dir = scratch("pynumpy");
    let script = format!(
        r#"
import pickle, os, numpy as np
d = '{d}'
os.makedirs(d + '/processed_data'); os.makedirs(d + '/max_firing_rates')
for proto in (2, 4, 5):
    sweeps = [{{'stimulus_name': 'Noise 1', 'sampling_rate': np.float64(2e4),
               'current': {{np.int64(10): np.array([1.0, 2.0]), 20: np.array([1.5], dtype=np.float32)}},
               'firing_rate': {{10: np.array([0.0, 0.1]), 20: np.array([[0.05]]).ravel()}}}}]
    pickle.dump(sweeps, open(d + '/processed_data/processed_I_and_firing_rate_%d.pickle' % proto, 'wb'), protocol=proto)
    pickle.dump(np.float64(0.25), open(d + '/max_firing_rates/%d.pickle' % proto, 'wb'), protocol=proto)
    pickle.dump(np.arange(6, dtype='>i2').reshape(2, 3), open(d + '/m%d.pickle' % proto, 'wb'), protocol=proto)
    pickle.dump(np.asfortranarray(np.arange(6.0).reshape(2, 3)), open(d + '/f%d.pickle' % proto, 'wb'), protocol=proto)
"#,
        d = s(&dir)
    );
    run_python(py, &script);
    let data = gfr::data::DataDir::new(&dir);
    for proto in [2, 4, 5] {
        let cell = gfr::data::CellRecording::load(&data, proto).unwrap();
        assert_eq!(cell.sweeps[0].current[&10], vec![1.0, 2.0]);
        assert_eq!(cell.sweeps[0].current[&20], vec![1.5]);
        assert_eq!(cell.sweeps[0].firing_rate[&20], vec![0.05]);
        assert_eq!(cell.max_firing_rate, 0.25);
        use gfr::data::pickle::{PyValueExt, read_pickle};
        let m = read_pickle(&dir.join(format!("m{proto}.pickle"))).unwrap();
        let rows: Vec<Vec<f64>> = m
            .as_list()
            .unwrap()
            .iter()
            .map(|r| r.floats().unwrap())
            .collect();
        assert_eq!(rows, vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
        let f = read_pickle(&dir.join(format!("f{proto}.pickle"))).unwrap();
        let rows: Vec<Vec<f64>> = f
            .as_list()
            .unwrap()
            .iter()
            .map(|r| r.floats().unwrap())
            .collect();
        assert_eq!(rows, vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
