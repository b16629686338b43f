//! Personas: a system prompt and sampling settings, from `configs/personas/*.toml` (the
//! bundled ones are also built into the library, so apps work from any directory). edge-chat
//! and edge-serve both take their personas from here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sampler::SamplerConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    #[serde(default = "d_temp")]
    pub temperature: f32,
    #[serde(default = "d_top_p")]
    pub top_p: f32,
    #[serde(default = "d_top_k")]
    pub top_k: usize,
    #[serde(default = "d_min_p")]
    pub min_p: f32,
    #[serde(default = "d_rep")]
    pub repeat_penalty: f32,
    #[serde(default = "d_max")]
    pub max_tokens: usize,
}

fn d_temp() -> f32 {
    0.7
}
fn d_top_p() -> f32 {
    0.9
}
fn d_top_k() -> usize {
    40
}
fn d_min_p() -> f32 {
    0.05
}
fn d_rep() -> f32 {
    1.1
}
fn d_max() -> usize {
    512
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: d_temp(),
            top_p: d_top_p(),
            top_k: d_top_k(),
            min_p: d_min_p(),
            repeat_penalty: d_rep(),
            max_tokens: d_max(),
        }
    }
}

impl Sampling {
    /// The sampler these settings describe, drawing from `seed`.
    pub fn sampler(&self, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed,
            ..SamplerConfig::default()
        }
    }

    /// `/set KEY VALUE`: the names users type.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let f = || {
            value
                .parse::<f32>()
                .map_err(|_| format!("{key}: {value:?} is not a number"))
        };
        let u = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{key}: {value:?} is not a whole number"))
        };
        match key {
            "temp" | "temperature" => self.temperature = f()?.clamp(0.0, 5.0),
            "top_p" => self.top_p = f()?.clamp(0.0, 1.0),
            "top_k" => self.top_k = u()?,
            "min_p" => self.min_p = f()?.clamp(0.0, 1.0),
            "repeat_penalty" => self.repeat_penalty = f()?.clamp(0.5, 3.0),
            "max_tokens" => self.max_tokens = u()?.max(1),
            _ => {
                return Err(format!(
                "unknown setting {key:?} (temp, top_p, top_k, min_p, repeat_penalty, max_tokens)"
            ))
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        format!(
            "temp {} · top_p {} · top_k {} · min_p {} · repeat_penalty {} · max_tokens {}",
            self.temperature,
            self.top_p,
            self.top_k,
            self.min_p,
            self.repeat_penalty,
            self.max_tokens
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub name: String,
    #[serde(default)]
    pub title: String,
    pub system: String,
    #[serde(default)]
    pub sampling: Sampling,
}

/// The personas built into the binary (the files in `configs/personas/`).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "listener.toml",
        include_str!("../../configs/personas/listener.toml"),
    ),
    (
        "xiaonuan.toml",
        include_str!("../../configs/personas/xiaonuan.toml"),
    ),
    (
        "coach.toml",
        include_str!("../../configs/personas/coach.toml"),
    ),
];

pub fn parse(text: &str, origin: &str) -> Result<Persona> {
    toml::from_str(text).map_err(|e| Error::Persona {
        origin: origin.to_string(),
        message: format!("not a persona: {e}"),
    })
}

/// The built-in personas, then those in `dir` (same name: the file wins).
pub fn load_all(dir: Option<&Path>) -> Result<Vec<Persona>> {
    let mut out: Vec<Persona> = BUILTIN
        .iter()
        .map(|(n, t)| parse(t, n))
        .collect::<Result<_>>()?;
    if let Some(dir) = dir.filter(|d| d.is_dir()) {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::Persona {
                origin: dir.display().to_string(),
                message: format!("reading the folder: {e}"),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| Error::Persona {
                origin: f.display().to_string(),
                message: format!("reading: {e}"),
            })?;
            let p = parse(&text, &f.display().to_string())?;
            out.retain(|q| q.name != p.name);
            out.push(p);
        }
    }
    Ok(out)
}
