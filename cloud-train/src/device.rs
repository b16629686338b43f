//! Backend selection. `flex` (pure-Rust CPU) is always built; `wgpu` and `cuda` are cargo
//! features of this crate.

use burn::prelude::Device;

/// A compute backend by name, as given on the command line or in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Flex,
    Wgpu,
    Cuda,
}

/// A backend that is unknown or not in this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown backend {0:?} (flex, wgpu, cuda)")]
    Unknown(String),
    #[error("backend {0} is not in this build: rebuild with `--features {0}`")]
    NotBuilt(&'static str),
}

impl std::str::FromStr for Backend {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s {
            "flex" | "cpu" => Ok(Backend::Flex),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(DeviceError::Unknown(s.to_string())),
        }
    }
}

impl Backend {
    /// The device, or why this build cannot provide it.
    pub fn device(self) -> Result<Device, DeviceError> {
        self.device_at(0)
    }

    /// The device of index `index` (a process's local rank picks its GPU; CPU ignores it).
    pub fn device_at(self, index: usize) -> Result<Device, DeviceError> {
        let _ = index;
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(index)),
            #[allow(unreachable_patterns)]
            Backend::Wgpu => Err(DeviceError::NotBuilt("wgpu")),
            #[allow(unreachable_patterns)]
            Backend::Cuda => Err(DeviceError::NotBuilt("cuda")),
        }
    }
}
