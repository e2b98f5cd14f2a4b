//! Configuration sources shared by both binaries: defaults, then an optional TOML file, then
//! `AIPROXY_*` environment variables (each with a `_FILE` variant that reads the value from a
//! file, for Kubernetes secrets), then command-line flags. Errors name the variable at fault.

use std::collections::BTreeMap;
use std::path::Path;

use crate::secret::Secret;

/// A configuration problem, rendered as one clear line naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            var: var.into(),
            message: message.into(),
        }
    }
}

/// A snapshot of the environment, taken once at startup (tests build one by hand instead of
/// mutating the process environment).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("AIPROXY_"))
                .collect(),
        }
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, or the trimmed contents of the file named by `name_FILE`.
    /// Both set is an error (ambiguous). Empty values count as unset.
    pub fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let direct = self.vars.get(name).filter(|v| !v.is_empty());
        let file_var = format!("{name}_FILE");
        let file = self.vars.get(&file_var).filter(|v| !v.is_empty());
        match (direct, file) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                name,
                format!("both {name} and {file_var} are set; use one"),
            )),
            (Some(v), None) => Ok(Some(v.clone())),
            (None, Some(path)) => read_secret_file(&file_var, Path::new(path)).map(Some),
            (None, None) => Ok(None),
        }
    }

    pub fn secret(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        Ok(self.get(name)?.map(Secret::new))
    }

    pub fn parse<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::new(name, format!("expected {what}, got {v:?}"))),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(name)?.as_deref().map(str::trim) {
            None => Ok(None),
            Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some("0" | "false" | "no" | "off") => Ok(Some(false)),
            Some(v) => Err(ConfigError::new(
                name,
                format!("expected true or false, got {v:?}"),
            )),
        }
    }

    /// Comma-separated list; blanks dropped.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        Ok(self.get(name)?.map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }))
    }

    /// `AIPROXY_*` names set in the environment that are not in `known` (nor their `_FILE`
    /// forms): likely typos, reported as warnings at startup.
    pub fn unknown(&self, known: &[&str]) -> Vec<String> {
        self.vars
            .keys()
            .filter(|k| {
                let base = k.strip_suffix("_FILE").unwrap_or(k);
                !known.contains(&base)
            })
            .cloned()
            .collect()
    }
}

fn read_secret_file(var: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| ConfigError::new(var, format!("cannot read {}: {e}", path.display())))
}

/// Reads an optional TOML file into `T` (which should reject unknown keys).
pub fn load_toml<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
    var: &str,
) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(var, format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError::new(var, format!("{}: {}", path.display(), e.message())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_variant_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "s3cret\n").unwrap();
        let env = Env::from_pairs([("AIPROXY_NODE_TOKEN_FILE", p.to_string_lossy().to_string())]);
        assert_eq!(
            env.get("AIPROXY_NODE_TOKEN").unwrap().as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn both_forms_is_an_error_naming_the_variable() {
        let env = Env::from_pairs([
            ("AIPROXY_NODE_TOKEN", "a"),
            ("AIPROXY_NODE_TOKEN_FILE", "/x"),
        ]);
        let err = env.get("AIPROXY_NODE_TOKEN").unwrap_err();
        assert_eq!(err.var, "AIPROXY_NODE_TOKEN");
    }

    #[test]
    fn missing_file_names_the_file_variable() {
        let env = Env::from_pairs([("AIPROXY_MASTER_KEY_FILE", "/nonexistent/key")]);
        let err = env.get("AIPROXY_MASTER_KEY").unwrap_err();
        assert_eq!(err.var, "AIPROXY_MASTER_KEY_FILE");
        assert!(err.to_string().contains("/nonexistent/key"));
    }

    #[test]
    fn parse_errors_name_the_variable() {
        let env = Env::from_pairs([("AIPROXY_HTTP_ADDR", "nope"), ("AIPROXY_X", "yes")]);
        let err = env
            .parse::<std::net::SocketAddr>("AIPROXY_HTTP_ADDR", "host:port")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("configuration error: AIPROXY_HTTP_ADDR: expected host:port")
        );
        assert_eq!(env.bool("AIPROXY_X").unwrap(), Some(true));
        assert_eq!(
            env.unknown(&["AIPROXY_HTTP_ADDR"]),
            vec!["AIPROXY_X".to_string()]
        );
    }
}
