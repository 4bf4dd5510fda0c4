"""NWB 2 files for the tests, written with h5py in the layout pynwb gives an Allen / IPFX
patch-clamp recording (independent of gfr's own writer in tests/common/nwb2_fixture.rs).

The voltage comes from a leaky integrate-and-fire cell in numpy with a spike waveform pasted at
each threshold crossing, so the true spike times are known.
"""

import numpy as np
import h5py

RATE = 50_000.0

# (sweep number, stimulus description, our name, shape of the current in units of rheobase)
PROTOCOL = [
    (1, "EXTPSMOKET180424_DA_0", "Test", "none"),
    (2, "C1LSCOARSE150216_DA_0", "Long Square", "step0.8"),
    (3, "C1LSCOARSE150216_DA_0", "Long Square", "step1.5"),
    (4, "C1LSCOARSE150216_DA_0", "Long Square", "step2.2"),
    (5, "C1RP25PR1S141203_DA_0", "Ramp", "ramp"),
    (6, "C1NSSEED_1150216_DA_0", "Noise 1", "noise"),
    (7, "C1NSSEED_1150216_DA_0[1]", "Noise 1", "noise"),
    (8, "C1NSSEED_2150216_DA_0", "Noise 2", "noise"),
    (9, "C1NSSEED_2150216_DA_0[1]", "Noise 2", "noise"),
]

RHEOBASE_PA = 100.0
SPIKE = np.concatenate(
    [np.linspace(-50.0, 30.0, 15), np.linspace(30.0, -65.0, 60)]
)  # mV, 0.3 ms up, 1.2 ms down at 50 kHz


def current(shape, n, rate, rng):
    """The stimulus (pA) of one sweep: a −10 pA test pulse at 10–20 ms, the stimulus from
    1 s to 1 s before the end."""
    pa = np.zeros(n)
    on, off = int(1.0 * rate), n - int(1.0 * rate)
    if shape.startswith("step"):
        pa[on:off] = float(shape[4:]) * RHEOBASE_PA
    elif shape == "ramp":
        pa[on:] = np.arange(n - on) / rate * 1.0 * RHEOBASE_PA
    elif shape == "noise":
        # frozen noise: the same seed for every noise sweep
        frozen = np.random.default_rng(7).standard_normal(off - on)
        smooth = np.convolve(frozen, np.ones(250) / np.sqrt(250), mode="same")
        pa[on:off] = RHEOBASE_PA * (1.3 + 0.6 * smooth)
    pa[int(0.01 * rate) : int(0.02 * rate)] = -10.0
    return pa


def lif(pa, rate, rng):
    """Membrane potential (mV) of a leaky integrate-and-fire cell driven by `pa` (pA), with
    spike waveforms, and its spike (threshold) times in s."""
    dt = 1000.0 / rate  # ms
    tau, el, vth, reset = 10.0, -70.0, -50.0, -65.0
    gain = 21.0 / RHEOBASE_PA  # mV per pA at steady state: rheobase reaches threshold + 1
    noise = rng.standard_normal(len(pa)) * 0.15
    v = np.empty(len(pa))
    x, k, spikes = el, 0, []
    while k < len(pa):
        x += dt * (-(x - el) + gain * pa[k]) / tau
        if x >= vth:
            spikes.append(k / rate)
            end = min(k + len(SPIKE), len(pa))
            v[k:end] = SPIKE[: end - k]
            k, x = end, reset
            continue
        v[k] = x
        k += 1
    return v + noise, np.array(spikes)


def write_nwb2(path, seconds=4.0, seed=0, sweeps=PROTOCOL):
    """Writes a cell's recording to `path`; returns {sweep number: (pA, mV, true spike s)}."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    truth = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = "2.2.5"
        f.attrs["namespace"] = "core"
        f.attrs["neurodata_type"] = "NWBFile"
        for k, v in [
            ("identifier", "gfr-python-fixture"),
            ("session_description", "gfr Python test fixture"),
            ("session_start_time", "2020-01-01T00:00:00+00:00"),
            ("timestamps_reference_time", "2020-01-01T00:00:00+00:00"),
        ]:
            f.create_dataset(k, data=[v.encode()], dtype=h5py.string_dtype())
        el = f.create_group("general/intracellular_ephys/electrode_0")
        el.attrs["neurodata_type"] = "IntracellularElectrode"
        acq = f.create_group("acquisition")
        pres = f.create_group("stimulus/presentation")
        for number, code, _name, shape in sweeps:
            pa = current(shape, n, RATE, rng)
            mv, spikes = lif(pa, RATE, rng)
            truth[number] = (pa.astype(np.float32), mv.astype(np.float32), spikes)
            for parent, kind, suffix, data, conversion, unit in [
                (acq, "CurrentClampSeries", "AD0", mv, 1e-3, "volts"),
                (pres, "CurrentClampStimulusSeries", "DA0", pa, 1e-12, "amperes"),
            ]:
                g = parent.create_group(f"data_{number:05}_{suffix}")
                g.attrs["neurodata_type"] = kind
                g.attrs["namespace"] = "core"
                g.attrs["stimulus_description"] = code
                g.attrs["description"] = "PLACEHOLDER"
                g.attrs["sweep_number"] = np.uint32(number)
                d = g.create_dataset("data", data=data.astype(np.float32))
                d.attrs["conversion"] = np.float32(conversion)
                d.attrs["resolution"] = np.float32(np.nan)
                d.attrs["unit"] = unit
                st = g.create_dataset("starting_time", data=np.float64(number * 10.0))
                st.attrs["rate"] = np.float32(RATE)
                st.attrs["unit"] = "seconds"
                g.create_dataset("gain", data=np.float32(1.0))
                g["electrode"] = h5py.SoftLink("/general/intracellular_ephys/electrode_0")
    return truth
