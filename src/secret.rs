//! Secrets (passwords, tokens, webhook URLs with keys) read from the environment or a file.
//! They print as `[redacted]` in Debug and Display, so a log line or an error message that
//! formats one cannot leak it.

use std::fmt;
use std::path::Path;

/// A secret value; only [`Secret::expose`] gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value that is already in memory (e.g. from a URL the operator wrote).
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// Read from an environment variable; the error names the variable, never its value.
    pub(crate) fn from_env(var: &str) -> Result<Secret, String> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
            Ok(_) => Err(format!("environment variable {var} is empty")),
            Err(_) => Err(format!("environment variable {var} is not set")),
        }
    }

    /// Read from a file (first line, trimmed); the error names the file, never its content.
    pub(crate) fn from_file(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let v = text.lines().next().unwrap_or("").trim().to_string();
        if v.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(Secret(v))
    }

    /// The secret text, for the one place that must send it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Replace every occurrence of the secret in `text` (e.g. an error message from a library
    /// that echoes a URL) by `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "[redacted]")
    }
}

/// Where a secret is read from: never the configuration file itself. Read afresh each time
/// (a rotated token file is picked up); errors name the variable or file, never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the allocwatch process.
    Env(String),
    /// A file (first line, trimmed).
    File(std::path::PathBuf),
}

impl SecretSource {
    /// Read the secret now.
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Env(v) => Secret::from_env(v),
            SecretSource::File(p) => Secret::from_file(p),
        }
    }

    /// Read the secret now; an error names the configuration key it came from (`at.key_env`
    /// or `at.key_file`), then the variable or file.
    pub(crate) fn read_as(&self, at: &str, key: &str) -> Result<Secret, String> {
        let which = match self {
            SecretSource::Env(_) => "env",
            SecretSource::File(_) => "file",
        };
        self.read().map_err(|e| format!("{at}.{key}_{which}: {e}"))
    }

    /// Where it is read from, for messages (`environment variable X`, `file /path`).
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::File(p) => format!("file {}", p.display()),
        }
    }

    /// The source of a `<key>_env` / `<key>_file` pair of a configuration table (`at` names
    /// the table, `key` the secret): at most one of them; `None` when neither is given.
    pub(crate) fn from_keys(at: &str, key: &str, env: Option<String>, file: Option<std::path::PathBuf>) -> Result<Option<SecretSource>, String> {
        match (env, file) {
            (Some(_), Some(_)) => Err(format!("{at}: give {key}_env or {key}_file, not both")),
            (Some(v), None) if v.trim().is_empty() => Err(format!("{at}.{key}_env: must name an environment variable")),
            (Some(v), None) => Ok(Some(SecretSource::Env(v.trim().to_string()))),
            (None, Some(f)) => Ok(Some(SecretSource::File(f))),
            (None, None) => Ok(None),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2-very-secret".into());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.scrub("url=https://x/hunter2-very-secret/y"), "url=https://x/[redacted]/y");
        let e = Secret::from_env("ALLOCWATCH_TEST_SURELY_UNSET").unwrap_err();
        assert!(e.contains("ALLOCWATCH_TEST_SURELY_UNSET is not set"));
    }
}
