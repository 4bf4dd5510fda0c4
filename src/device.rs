//! Choosing the backend at run time: CPU (ndarray) or GPU (wgpu).

use anyhow::{Result, bail};
use burn::tensor::{Device, DeviceKind, Tensor};

/// `--device` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// ndarray on the CPU.
    Cpu,
    /// wgpu: Vulkan / Metal / DX12 / GL, whichever the machine offers.
    Wgpu,
}

impl Backend {
    /// The `--device` value: "cpu" or "wgpu".
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The device, checked to work: a wgpu device without an adapter is an error, not a panic.
    pub fn device(self) -> Result<Device> {
        match self {
            // ndarray is deprecated upstream in favour of flex, but it is the CPU backend
            // the project is asked to use.
            #[allow(deprecated)]
            Backend::Cpu => Ok(Device::ndarray()),
            Backend::Wgpu => {
                if !wgpu_available() {
                    bail!(
                        "wgpu: no GPU adapter could be opened (no Vulkan, Metal, DX12 or GL driver found); use the CPU backend (ndarray) instead"
                    );
                }
                Ok(Device::wgpu(DeviceKind::DefaultDevice))
            }
        }
    }
}

/// Whether `device` (with or without autodiff) is the CPU backend.
pub fn is_cpu(device: &Device) -> bool {
    device.clone().without_autodiff() == cpu()
}

/// Device memory (MB) the wgpu backend's pools hold now, every stream: what it reserved on the
/// device, the pages a later allocation reuses included. 0 on the CPU.
pub fn device_memory_mb(device: &Device) -> f64 {
    if is_cpu(device) {
        return 0.0;
    }
    // gfr opens wgpu's default device only (see `Backend::device`)
    let Ok(wgpu) = cubecl::Device::wgpu(cubecl::device::WgpuDeviceKind::DefaultDevice) else {
        return 0.0;
    };
    let client = wgpu.client();
    let usage = client.memory_report(cubecl::MemoryScope::Device).usage();
    usage.bytes_reserved as f64 / (1024.0 * 1024.0)
}

/// Time this process has spent in reads from a device (s), through `timed_read`. A read
/// waits until the device has run everything queued before it; on a GPU, whose work runs
/// behind the host's, that is the time the host had nothing left to queue (0 on the CPU, whose
/// operations run as they are called).
pub fn device_wait_seconds() -> f64 {
    DEVICE_WAIT_NS.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
}

static DEVICE_WAIT_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `read()`, a read of a tensor from its device, timed into [`device_wait_seconds`].
pub(crate) fn timed_read<T>(read: impl FnOnce() -> T) -> T {
    let t0 = std::time::Instant::now();
    let out = read();
    DEVICE_WAIT_NS.fetch_add(
        t0.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    out
}

/// Whether a wgpu adapter can be opened and run a kernel. Probed once per process.
pub fn wgpu_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let ok = std::panic::catch_unwind(|| {
            let d = Device::wgpu(DeviceKind::DefaultDevice);
            let t = Tensor::<1>::from_floats([1.0, 2.0], &d) * 2.0;
            t.into_data()
                .try_to_vec::<f32>()
                .map(|v| v == vec![2.0, 4.0])
                .unwrap_or(false)
        })
        .unwrap_or(false);
        std::panic::set_hook(hook);
        ok
    })
}

/// The CPU device (ndarray).
pub fn cpu() -> Device {
    #[allow(deprecated)]
    Device::ndarray()
}
