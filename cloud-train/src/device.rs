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

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flex" | "cpu" => Ok(Backend::Flex),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(format!("unknown backend {s:?} (flex, wgpu, cuda)")),
        }
    }
}

impl Backend {
    /// The device, or why this build cannot provide it.
    pub fn device(self) -> Result<Device, String> {
        self.device_at(0)
    }

    /// The device of index `index` (a process's local rank picks its GPU; CPU ignores it).
    pub fn device_at(self, index: usize) -> Result<Device, String> {
        let _ = index;
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(index)),
            #[allow(unreachable_patterns)]
            other => Err(format!(
                "backend {other:?} is not in this build: rebuild with `--features {}`",
                format!("{other:?}").to_lowercase()
            )),
        }
    }
}
