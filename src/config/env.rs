//! The `PRESENCED_*` variables, written over the file's table by the type of their key.

use super::keys::{ENV_PREFIX, KEYS};
use super::{ConfigError, CONFIG_FILE_VAR};
use std::collections::HashMap;

/// Writes the `PRESENCED_*` variables among `env` into `table`, and returns which variable set
/// each key (by `section.key`) so that later messages can point at it.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut set_by: HashMap<String, String> = HashMap::new();
    for (var, text) in env {
        if !var.starts_with(ENV_PREFIX) || var == CONFIG_FILE_VAR {
            continue;
        }
        let Some(key) = KEYS.iter().find(|k| k.is_named_by(&var)) else {
            let names: Vec<String> = KEYS
                .iter()
                .flat_map(|k| {
                    k.alias
                        .map(|a| format!("{ENV_PREFIX}{a}"))
                        .into_iter()
                        .chain([k.env_var()])
                })
                .chain([CONFIG_FILE_VAR.to_owned()])
                .collect();
            return Err(ConfigError::invalid(format!(
                "unknown environment variable {var}: expected one of {}",
                names.join(", ")
            )));
        };
        let path = key.path();
        if let Some(other) = set_by.get(&path).filter(|other| **other != var) {
            return Err(ConfigError::invalid(format!(
                "{other} and {var} both set {path}, which is ambiguous: unset one of them"
            )));
        }
        let value = key.kind.parse_env(&var, &text, &path)?;
        let section = table
            .entry(key.section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // check_file has rejected a section that is not a table, so this always matches.
        if let toml::Value::Table(section) = section {
            section.insert(key.name.to_owned(), value);
        }
        set_by.insert(path, var);
    }
    Ok(set_by)
}
