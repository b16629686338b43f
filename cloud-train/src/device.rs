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
    /// A shared library the backend loads at run time is missing.
    #[error("backend {backend}: {what} not found (tried {tried}); install it or add its folder to LD_LIBRARY_PATH")]
    MissingLibrary {
        backend: &'static str,
        what: &'static str,
        tried: String,
    },
}

/// The CUDA libraries the `cuda` backend loads when it starts (cudarc's dynamic loading):
/// what each is, and the names tried, newest first. Checked before the device is made,
/// because a missing one otherwise panics in a worker thread.
pub const CUDA_LIBRARIES: [(&str, &[&str]); 2] = [
    (
        "the NVIDIA driver (libcuda)",
        &["libcuda.so.1", "libcuda.so"],
    ),
    (
        "NVRTC, CUDA's run-time compiler (libnvrtc)",
        &[
            "libnvrtc.so.13",
            "libnvrtc.so.12",
            "libnvrtc.so.11.2",
            "libnvrtc.so",
        ],
    ),
];

/// The first of `names` the dynamic loader can open, if any.
pub fn find_library(names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        let c = std::ffi::CString::new(*name).ok()?;
        // SAFETY: `c` is a valid NUL-terminated string; a library that opens is closed again
        // at once (its initializers run, as they would when the backend loads it).
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return None;
        }
        // SAFETY: `handle` came from a successful dlopen and is closed once.
        unsafe { libc::dlclose(handle) };
        Some((*name).to_string())
    })
}

/// Every library in `libs` can be loaded, or the first that cannot, as an error.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn check_libraries(
    backend: &'static str,
    libs: &[(&'static str, &[&str])],
) -> Result<(), DeviceError> {
    for (what, names) in libs {
        if find_library(names).is_none() {
            return Err(DeviceError::MissingLibrary {
                backend,
                what,
                tried: names.join(", "),
            });
        }
    }
    Ok(())
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
            Backend::Cuda => {
                check_libraries("cuda", &CUDA_LIBRARIES)?;
                Ok(Device::cuda(index))
            }
            #[allow(unreachable_patterns)]
            Backend::Wgpu => Err(DeviceError::NotBuilt("wgpu")),
            #[allow(unreachable_patterns)]
            Backend::Cuda => Err(DeviceError::NotBuilt("cuda")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_clear_error() {
        assert_eq!(
            find_library(&["libno-such-library.so.9", "libc.so.6"]).as_deref(),
            Some("libc.so.6")
        );
        assert_eq!(find_library(&["libno-such-library.so.9"]), None);
        let e = check_libraries(
            "cuda",
            &[("the thing (libthing)", &["libno-such-library.so.9"])],
        )
        .expect_err("missing");
        assert_eq!(
            e.to_string(),
            "backend cuda: the thing (libthing) not found (tried libno-such-library.so.9); install it or add its folder to LD_LIBRARY_PATH"
        );
        assert!(check_libraries("cuda", &[("libc", &["libc.so.6"])]).is_ok());
    }
}
