//! Reading the config's JSON, key by key: each reader checks its value's type and form
//! and names the key in its error.

use super::keys::example_for;
use super::DEFAULT_REST_BATCH_ROWS;
use super::{invalid, ConflictAction, ConflictTarget, StrategyChoice, CONFIG_EXAMPLE};
use crate::error::{BackfillError, Code, Result};
use serde_json::{Map, Value};

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(super) fn wrong_type(key: &str, want: &str, got: &Value) -> BackfillError {
    invalid(format!("config key \"{key}\" must be {want}, not {}", type_name(got)))
        .hint(format!("for example: {}", example_for(key)))
}

pub(super) fn required_name(obj: &Map<String, Value>, key: &str) -> Result<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(invalid(format!("config key \"{key}\" is required"))
            .hint(format!("add it to the job's config, for example {}", example_for(key)))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(invalid(format!("config key \"{key}\" must not be empty"))
                .hint(format!("for example {}", example_for(key))))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong_type(key, "a table name (string)", other)),
    }
}

pub(super) fn opt_bool(obj: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(wrong_type(key, "a boolean", other)),
    }
}

pub(super) fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// A column name as written in the config: `"Name"` quoted keeps its text, anything
/// else is taken as written (config arrays hold names, not SQL).
pub fn column_name(raw: &str) -> String {
    let t = raw.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t[1..t.len() - 1].replace("\"\"", "\"")
    } else {
        t.to_string()
    }
}

pub(super) fn string_array(key: &str, v: &Value) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(wrong_type(key, "an array of column names", v));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.trim().is_empty() => {
                let name = column_name(s);
                if out.contains(&name) {
                    return Err(invalid(format!(
                        "config key \"{key}\" names column \"{name}\" twice"
                    ))
                    .hint("list each column once"));
                }
                out.push(name)
            }
            Value::String(_) => {
                return Err(invalid(format!("config key \"{key}\" holds an empty column name"))
                    .hint("remove the empty entry"))
            }
            other => return Err(wrong_type(key, "an array of column names (strings)", other)),
        }
    }
    Ok(out)
}

/// An interval given as text (checked by the database later), or its default.
pub(super) fn interval_key(obj: &Map<String, Value>, key: &str, default: &str) -> Result<String> {
    match opt_string(obj, key)? {
        None => Ok(default.to_string()),
        Some(s) if s.trim().is_empty() => {
            Err(invalid(format!("config key \"{key}\" must not be empty"))
                .hint(format!("for example {}", example_for(key))))
        }
        Some(s) => Ok(s),
    }
}

/// Parses `on_conflict_target` given as text: `(a, b)` or `a, b` is a column list,
/// one word is a constraint name or a column.
pub fn parse_target_text(text: &str) -> Result<ConflictTarget> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(ConflictTarget::Default);
    }
    let (inner, parenthesised) = match t.strip_prefix('(') {
        Some(rest) => match rest.strip_suffix(')') {
            Some(inner) => (inner, true),
            None => {
                return Err(invalid(format!(
                    "config key \"on_conflict_target\" has an unclosed parenthesis: {t}"
                ))
                .hint("write a column list as (col1, col2) or as a JSON array"))
            }
        },
        None => (t, false),
    };
    let parts: Vec<String> = split_names(inner).into_iter().map(|p| column_name(&p)).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(format!(
            "config key \"on_conflict_target\" holds an empty column name: {t}"
        ))
        .hint("write a column list as (col1, col2) or as a JSON array"));
    }
    if parts.len() == 1 && !parenthesised {
        Ok(ConflictTarget::NameOrColumn(parts.into_iter().next().unwrap()))
    } else {
        Ok(ConflictTarget::Columns(parts))
    }
}

/// Splits `a, "b,c", d` on commas outside double quotes.
pub(super) fn split_names(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                parts.last_mut().unwrap().push(c);
            }
            ',' if !quoted => parts.push(String::new()),
            _ => parts.last_mut().unwrap().push(c),
        }
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

/// The config as a JSON object.
pub(super) fn object(value: Option<&Value>) -> Result<&Map<String, Value>> {
    match value {
        None | Some(Value::Null) => {
            Err(BackfillError::new(Code::NullValueNotAllowed, "the backfill job's config is NULL")
                .hint(CONFIG_EXAMPLE))
        }
        Some(Value::Object(obj)) => Ok(obj),
        Some(other) => Err(invalid(format!(
            "the backfill job's config must be a JSON object, not {}",
            type_name(other)
        ))
        .hint(CONFIG_EXAMPLE)),
    }
}

/// `on_conflict_action`, `on_conflict_update_columns` and `on_conflict_target`.
pub(super) fn conflict_keys(
    obj: &Map<String, Value>,
) -> Result<(ConflictAction, Vec<String>, ConflictTarget)> {
    let on_conflict =
        match opt_string(obj, "on_conflict_action")? {
            None => ConflictAction::Nothing,
            Some(s) => {
                ConflictAction::parse(&s).ok_or_else(|| {
                    invalid(format!("config key \"on_conflict_action\" must be NOTHING, UPDATE or \
                RESTRICT, not \"{s}\""))
                .hint("NOTHING keeps existing rows, UPDATE overwrites them, RESTRICT stops at the \
                    first conflict")
                })?
            }
        };
    let update_columns = match obj.get("on_conflict_update_columns") {
        None | Some(Value::Null) => vec![],
        Some(v) => string_array("on_conflict_update_columns", v)?,
    };
    let conflict_target = match obj.get("on_conflict_target") {
        None | Some(Value::Null) => ConflictTarget::Default,
        Some(Value::String(s)) => parse_target_text(s)?,
        Some(v @ Value::Array(_)) => {
            let cols = string_array("on_conflict_target", v)?;
            if cols.is_empty() {
                ConflictTarget::Default
            } else {
                ConflictTarget::Columns(cols)
            }
        }
        Some(other) => {
            return Err(wrong_type(
                "on_conflict_target",
                "an array of column names or a constraint name",
                other,
            ))
        }
    };
    Ok((on_conflict, update_columns, conflict_target))
}

/// An optional interval key with no default.
pub(super) fn opt_interval(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => Ok(Some(interval_key(obj, key, "")?)),
    }
}

/// `strategy`: auto by default.
pub(super) fn strategy(obj: &Map<String, Value>) -> Result<StrategyChoice> {
    match opt_string(obj, "strategy")? {
        None => Ok(StrategyChoice::Auto),
        Some(s) => StrategyChoice::parse(&s).ok_or_else(|| {
            invalid(format!(
                "config key \"strategy\" must be auto, direct or decompress, \
                not \"{s}\""
            ))
            .hint(
                "auto chooses per chunk; direct inserts into compressed chunks; decompress \
                    decompresses each chunk whole",
            )
        }),
    }
}

/// `rest_batch_rows`: a positive integer.
pub(super) fn rest_batch_rows(obj: &Map<String, Value>) -> Result<i64> {
    Ok(positive_int(obj, "rest_batch_rows", i64::MAX)?.unwrap_or(DEFAULT_REST_BATCH_ROWS))
}

/// An integer key from 1 to `max`, if given.
pub(super) fn positive_int(obj: &Map<String, Value>, key: &str, max: i64) -> Result<Option<i64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|k| k > 0 && k <= max) => Ok(n.as_i64()),
        Some(other) if max == i64::MAX => Err(wrong_type(key, "a positive integer", other)),
        Some(other) => Err(wrong_type(key, &format!("an integer from 1 to {max}"), other)),
    }
}

/// `work_mem`: a size as text, or a number of kB.
pub(super) fn work_mem(obj: &Map<String, Value>) -> Result<Option<String>> {
    match obj.get("work_mem") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|k| k > 0) => {
            Ok(Some(format!("{}kB", n.as_u64().unwrap())))
        }
        Some(other) => Err(wrong_type(
            "work_mem",
            "a memory size such as \"256MB\" or a positive number of kB",
            other,
        )),
    }
}
