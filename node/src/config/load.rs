//! Layering the settings: the embedded defaults, then YAML files in order, a `prefs.toml`,
//! then the environment; every value lands under a name [`Settings`] knows or is refused
//! naming its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::{err, ConfigError, Settings};

/// How a plain (non-JSON) environment value becomes a setting.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Text,
    /// Comma separated.
    List,
}

fn kind_of(key: &str, defaults: &Mapping) -> Option<Kind> {
    match defaults.get(key)? {
        Value::Bool(_) => Some(Kind::Bool),
        Value::Number(_) => Some(Kind::Int),
        Value::Sequence(_) => Some(Kind::List),
        // Strings, paths, enums and optional URLs (null by default).
        _ => Some(Kind::Text),
    }
}

fn flatten_into(
    prefix: &str,
    map: &Mapping,
    out: &mut BTreeMap<String, Value>,
    origin: &str,
) -> Result<(), ConfigError> {
    for (k, v) in map {
        let Some(k) = k.as_str() else {
            return Err(err(origin, format!("key {k:?} is not a string")));
        };
        // An empty name would reach the error below as "unknown field ``", naming nothing
        // (found by the config fuzz target).
        if k.trim().is_empty() {
            let at = if prefix.is_empty() {
                "the top level"
            } else {
                prefix
            };
            return Err(err(
                origin,
                format!("a setting under {at} has an empty name"),
            ));
        }
        let key = if prefix.is_empty() {
            k.to_ascii_lowercase()
        } else {
            format!("{prefix}_{}", k.to_ascii_lowercase())
        };
        match v {
            Value::Mapping(inner) => flatten_into(&key, inner, out, origin)?,
            other => {
                out.insert(key, other.clone());
            }
        }
    }
    Ok(())
}

fn env_value(key: &str, raw: &str, kind: Kind) -> Result<Value, ConfigError> {
    let raw = raw.trim();
    Ok(match kind {
        Kind::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => return Err(err(key, format!("expected true or false, got {raw:?}"))),
        },
        Kind::Int => match (raw.parse::<u64>(), raw.parse::<i64>()) {
            (Ok(n), _) => Value::Number(n.into()),
            (_, Ok(n)) => Value::Number(n.into()),
            _ => return Err(err(key, format!("expected a whole number, got {raw:?}"))),
        },
        Kind::Text => Value::String(raw.to_string()),
        Kind::List => Value::Sequence(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
    })
}

/// Layers defaults, `files` in order, then `env` (name, value) pairs; returns the settings.
pub fn load(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    load_with_prefs(files, None, env)
}

/// Reads `RedundancyLevel` from a MultiversX-style `prefs.toml` (`[Preferences]` table); a
/// missing value means 0, as in the seed.
pub fn read_prefs(path: &Path) -> Result<i64, ConfigError> {
    let origin = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| err(&origin, format!("cannot read: {e}")))?;
    prefs_from_text(&text, &origin)
}

/// [`read_prefs`] of a prefs.toml's text; `origin` names it in errors.
pub fn prefs_from_text(text: &str, origin: &str) -> Result<i64, ConfigError> {
    let doc: toml::Table =
        toml::from_str(text).map_err(|e| err(origin, format!("not valid TOML: {e}")))?;
    let Some(prefs) = doc.get("Preferences") else {
        return Ok(0);
    };
    let Some(level) = prefs.get("RedundancyLevel") else {
        return Ok(0);
    };
    level.as_integer().ok_or_else(|| {
        err(
            format!("{origin}: [Preferences] RedundancyLevel"),
            format!("expected a whole number, got {level}"),
        )
    })
}

/// [`load`], with `redundancy_level` from a `prefs.toml` layered after the files (the
/// environment still wins).
pub fn load_with_prefs(
    files: &[PathBuf],
    prefs: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let mut texts = Vec::new();
    for file in files {
        let origin = file.display().to_string();
        let text =
            std::fs::read_to_string(file).map_err(|e| err(&origin, format!("cannot read: {e}")))?;
        texts.push((origin, text));
    }
    let level = prefs.map(read_prefs).transpose()?;
    layer(&texts, level, env)
}

/// Layers the defaults, YAML `texts` (origin, text) in order, a prefs.toml's level, then
/// `env`: what [`load_with_prefs`] does once the files are read.
pub fn layer(
    texts: &[(String, String)],
    prefs_level: Option<i64>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let defaults = match serde_yaml_ng::to_value(Settings::default()) {
        Ok(Value::Mapping(m)) => m,
        _ => return Err(err("defaults", "cannot represent the embedded defaults")),
    };
    let mut merged = BTreeMap::new();
    flatten_into("", &defaults, &mut merged, "defaults")?;
    for (origin, text) in texts {
        let value: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| err(origin, format!("not valid YAML: {e}")))?;
        match value {
            Value::Null => {}
            Value::Mapping(m) => flatten_into("", &m, &mut merged, origin)?,
            _ => return Err(err(origin, "must be a mapping of settings")),
        }
    }
    if let Some(level) = prefs_level {
        merged.insert("redundancy_level".to_string(), Value::Number(level.into()));
    }
    for (name, raw) in env {
        let lower = name.to_ascii_lowercase();
        let (key, json) = match lower.strip_suffix("__json") {
            Some(k) => (k.to_string(), true),
            None => (lower, false),
        };
        let Some(kind) = kind_of(&key, &defaults) else {
            // The environment holds much else; only our names are read.
            continue;
        };
        let value = if json {
            let parsed: serde_json::Value = serde_json::from_str(&raw)
                .map_err(|e| err(&name, format!("not valid JSON: {e}")))?;
            serde_yaml_ng::to_value(parsed).map_err(|e| err(&name, e.to_string()))?
        } else {
            env_value(&name, &raw, kind)?
        };
        merged.insert(key, value);
    }
    let mapping: Mapping = merged
        .into_iter()
        .map(|(k, v)| (Value::String(k), v))
        .collect();
    // The path names the setting whatever the error's wording (a negative number for an
    // unsigned setting names only the value).
    serde_path_to_error::deserialize(Value::Mapping(mapping)).map_err(|e| {
        let path = e.path().to_string();
        let text = e.inner().to_string();
        let key = if path.is_empty() || path == "." {
            text.split('`')
                .nth(1)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| "config".to_string())
        } else {
            path
        };
        err(key, text)
    })
}
