//! Matching staging columns to destination columns by name, and resolving the conflict
//! target and update columns. Pure: fed with what the catalog lookups read.

use crate::config::{Config, ConflictAction, ConflictTarget};
use crate::error::{BackfillError, Code, Result};

/// How the insert treats rows whose key exists: resolved against the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub action: ConflictAction,
    /// Columns of the unique constraint the target names; empty: no unique constraint.
    pub target: Vec<String>,
    /// Columns UPDATE overwrites.
    pub update_columns: Vec<String>,
    /// How the target's unique index tells two keys apart.
    pub rules: KeyRules,
    /// The copied columns staging declares NOT NULL: a staged key of these alone holds
    /// no NULL (filled in by the caller; empty: none known).
    pub not_null_in_staging: Vec<String>,
}

/// How a unique index compares keys: NULLs are distinct unless the index says `NULLS NOT
/// DISTINCT`, and each text column compares by the index's collation (whatever the
/// staging column's is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRules {
    pub nulls_not_distinct: bool,
    /// Per key column, in key order: the index's collation as a quoted qualified name;
    /// None for a column of a type without collation.
    pub collations: Vec<Option<String>>,
    /// Whether every collation of the key is deterministic (equal only when bytewise
    /// equal).
    pub deterministic: bool,
}

/// A column as read from `pg_attribute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type()` text, for messages.
    pub type_name: String,
    pub type_oid: u32,
    pub not_null: bool,
    pub has_default: bool,
    pub generated: bool,
    pub identity: bool,
    /// The column's collation, a quoted qualified name; None for a type without one.
    pub collation: Option<String>,
}

/// A unique index usable as an ON CONFLICT target (no expressions, no predicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// The constraint's name, or the index's name when no constraint owns it.
    pub name: String,
    pub primary: bool,
    pub columns: Vec<String>,
    pub rules: KeyRules,
}

/// Names of the two tables, for messages.
pub struct Names<'a> {
    pub staging: &'a str,
    pub destination: &'a str,
}

/// Checks the staging columns against the destination's and returns the columns to
/// copy (staging's, in staging's order). `castable(from, to)` says whether a staging
/// type can be stored into a destination type by assignment.
pub fn match_columns(
    staging: &[Column],
    dest: &[Column],
    names: &Names,
    castable: &dyn Fn(u32, u32) -> bool,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(staging.len());
    for s in staging {
        check_copied(s, dest, names, castable)?;
        out.push(s.name.clone());
    }
    for d in dest {
        let given = staging.iter().any(|s| s.name == d.name);
        if !given && d.not_null && !d.has_default && !d.generated && !d.identity {
            return Err(BackfillError::new(
                Code::NotNullViolation,
                format!(
                    "column \"{}\" of destination {} is NOT NULL without a default, but staging \
                     table {} has no such column",
                    d.name, names.destination, names.staging
                ),
            )
            .hint("add the column to the staging table"));
        }
    }
    if out.is_empty() {
        return Err(BackfillError::new(
            Code::UndefinedColumn,
            format!("staging table {} has no columns", names.staging),
        )
        .hint("give the staging table the destination's columns"));
    }
    Ok(out)
}

/// A staging column: its destination column exists, is not generated, and takes its type.
fn check_copied(
    s: &Column,
    dest: &[Column],
    names: &Names,
    castable: &dyn Fn(u32, u32) -> bool,
) -> Result<()> {
    let Some(d) = dest.iter().find(|d| d.name == s.name) else {
        return Err(BackfillError::new(
            Code::UndefinedColumn,
            format!(
                "column \"{}\" of staging table {} does not exist in destination {}",
                s.name, names.staging, names.destination
            ),
        )
        .hint("columns are matched by name: drop or rename the staging column"));
    };
    if d.generated {
        return Err(BackfillError::new(
            Code::GeneratedAlways,
            format!(
                "column \"{}\" of destination {} is generated and cannot be written from \
                staging table {}",
                d.name, names.destination, names.staging
            ),
        )
        .hint("drop the column from the staging table; the destination computes it"));
    }
    if s.type_oid != d.type_oid && !castable(s.type_oid, d.type_oid) {
        return Err(BackfillError::new(
            Code::DatatypeMismatch,
            format!(
                "column \"{}\" is {} in staging table {} but {} in destination {}",
                s.name, s.type_name, names.staging, d.type_name, names.destination
            ),
        )
        .hint(format!(
            "change the staging column's type: ALTER TABLE ... ALTER COLUMN ... TYPE {}",
            d.type_name
        )));
    }
    Ok(())
}

fn describe_keys(keys: &[UniqueKey]) -> String {
    if keys.is_empty() {
        return "it has no primary key or unique constraint".to_string();
    }
    let list: Vec<String> =
        keys.iter().map(|k| format!("{} ({})", k.name, k.columns.join(", "))).collect();
    format!("its unique constraints are: {}", list.join("; "))
}

fn key_for_columns<'k>(keys: &'k [UniqueKey], cols: &[String]) -> Option<&'k UniqueKey> {
    keys.iter()
        .find(|k| k.columns.len() == cols.len() && cols.iter().all(|c| k.columns.contains(c)))
}

/// Resolves the conflict handling for the run.
pub fn resolve_conflict(
    cfg: &Config,
    copied: &[String],
    dest: &[Column],
    keys: &[UniqueKey],
    names: &Names,
) -> Result<Conflict> {
    let key = target_key(cfg, dest, keys, names)?;
    let target = key.map(|k| k.columns.clone()).unwrap_or_default();
    if let Some(c) = target.iter().find(|c| !copied.contains(c)) {
        if cfg.on_conflict != ConflictAction::Nothing
            || cfg.conflict_target != ConflictTarget::Default
        {
            return Err(BackfillError::new(
                Code::UndefinedColumn,
                format!(
                    "conflict target column \"{c}\" is missing from staging table {}",
                    names.staging
                ),
            )
            .hint("add the column to the staging table, or choose another on_conflict_target"));
        }
    }
    let update_columns = if cfg.on_conflict != ConflictAction::Update {
        vec![]
    } else if target.is_empty() {
        return needs_key(
            names,
            "\"on_conflict_action\": \"UPDATE\"",
            "add a primary key or unique constraint to the destination, or use NOTHING",
        );
    } else if cfg.update_columns.is_empty() {
        copied.iter().filter(|c| !target.contains(c)).cloned().collect()
    } else {
        for c in &cfg.update_columns {
            check_update_column(c, copied, dest, &target, names)?;
        }
        cfg.update_columns.clone()
    };
    require_key_where_needed(cfg, keys, names)?;
    // a default target for DO NOTHING is left out, so every unique constraint counts
    if cfg.on_conflict == ConflictAction::Nothing && cfg.conflict_target == ConflictTarget::Default
    {
        return Ok(Conflict {
            action: cfg.on_conflict,
            target: vec![],
            update_columns,
            rules: KeyRules::default(),
            not_null_in_staging: vec![],
        });
    }
    let rules = key.map(|k| k.rules.clone()).unwrap_or_default();
    Ok(Conflict {
        action: cfg.on_conflict,
        target,
        update_columns,
        rules,
        not_null_in_staging: vec![],
    })
}

/// The unique key the config's target names (None: none).
fn target_key<'k>(
    cfg: &Config,
    dest: &[Column],
    keys: &'k [UniqueKey],
    names: &Names,
) -> Result<Option<&'k UniqueKey>> {
    match &cfg.conflict_target {
        ConflictTarget::Default => default_target(cfg.on_conflict, keys, names),
        ConflictTarget::Columns(cols) => {
            if let Some(c) = cols.iter().find(|c| !dest.iter().any(|d| &d.name == *c)) {
                return Err(BackfillError::new(
                    Code::UndefinedColumn,
                    format!(
                        "column \"{c}\" in \"on_conflict_target\" does not exist in destination {}",
                        names.destination
                    ),
                )
                .hint(
                    "list the columns of a primary key or unique constraint of the destination",
                ));
            }
            match key_for_columns(keys, cols) {
                Some(k) => Ok(Some(k)),
                None => Err(BackfillError::new(
                    Code::InvalidColumnReference,
                    format!(
                        "there is no unique or primary key constraint on ({}) in destination {}",
                        cols.join(", "),
                        names.destination
                    ),
                )
                .hint(format!("name the columns of an existing one; {}", describe_keys(keys)))),
            }
        }
        ConflictTarget::NameOrColumn(n) => named_target(n, dest, keys, names),
    }
}

/// No target given: the primary key, else the only unique key.
fn default_target<'k>(
    action: ConflictAction,
    keys: &'k [UniqueKey],
    names: &Names,
) -> Result<Option<&'k UniqueKey>> {
    let pk = keys.iter().find(|k| k.primary);
    match (pk, keys.len(), action) {
        (Some(pk), _, _) => Ok(Some(pk)),
        (None, 1, _) => Ok(Some(&keys[0])),
        (None, 0, _) => Ok(None),
        // several unique keys: DO NOTHING needs no target; the others do
        (None, _, ConflictAction::Nothing) => Ok(None),
        (None, n, action) => Err(BackfillError::new(
            Code::InvalidColumnReference,
            format!(
                "destination {} has {n} unique constraints and no primary key; {} needs to \
                know which one to use",
                names.destination,
                action.as_str()
            ),
        )
        .hint(format!("set \"on_conflict_target\" in the config; {}", describe_keys(keys)))),
    }
}

/// A target given as one word: a constraint's name, or a column a key is made of.
fn named_target<'k>(
    n: &str,
    dest: &[Column],
    keys: &'k [UniqueKey],
    names: &Names,
) -> Result<Option<&'k UniqueKey>> {
    if let Some(k) = keys.iter().find(|k| k.name == n) {
        return Ok(Some(k));
    }
    if !dest.iter().any(|d| d.name == n) {
        return Err(BackfillError::new(
            Code::InvalidColumnReference,
            format!(
                "\"on_conflict_target\" \"{n}\" is neither a constraint nor a column of \
                destination {}",
                names.destination
            ),
        )
        .hint(format!("name a constraint or list its columns; {}", describe_keys(keys))));
    }
    match key_for_columns(keys, &[n.to_string()]) {
        Some(k) => Ok(Some(k)),
        None => Err(BackfillError::new(
            Code::InvalidColumnReference,
            format!(
                "there is no unique or primary key constraint on ({n}) in destination {}",
                names.destination
            ),
        )
        .hint(format!("name an existing constraint or its columns; {}", describe_keys(keys)))),
    }
}

/// A column of `on_conflict_update_columns`: in both tables, not in the target.
fn check_update_column(
    c: &str,
    copied: &[String],
    dest: &[Column],
    target: &[String],
    names: &Names,
) -> Result<()> {
    if !dest.iter().any(|d| d.name == c) {
        return Err(BackfillError::new(
            Code::UndefinedColumn,
            format!(
                "column \"{c}\" in \"on_conflict_update_columns\" does not exist in destination {}",
                names.destination
            ),
        )
        .hint("list columns of the destination that the staging table also has"));
    }
    if !copied.iter().any(|x| x == c) {
        return Err(BackfillError::new(
            Code::UndefinedColumn,
            format!(
                "column \"{c}\" in \"on_conflict_update_columns\" is missing from staging table {}",
                names.staging
            ),
        )
        .hint(
            "an updated column takes its value from the staging row: add it to the staging table",
        ));
    }
    if target.iter().any(|x| x == c) {
        return Err(BackfillError::new(
            Code::InvalidParameterValue,
            format!(
                "column \"{c}\" is in the conflict target and cannot be \
                in \"on_conflict_update_columns\""
            ),
        )
        .hint("a conflict target column identifies the row; it cannot be overwritten"));
    }
    Ok(())
}

/// Without a unique key nothing tells a staged row that is already stored from a new
/// one: RESTRICT, and keeping rows in staging, need one.
fn require_key_where_needed(cfg: &Config, keys: &[UniqueKey], names: &Names) -> Result<()> {
    if keys.is_empty() && cfg.on_conflict == ConflictAction::Restrict {
        return needs_key(
            names,
            "\"on_conflict_action\": \"RESTRICT\"",
            "add a primary key or unique constraint to the destination; without one, RESTRICT \
             cannot see a duplicate and would insert it",
        );
    }
    if keys.is_empty() && !cfg.delete_from_staging {
        return needs_key(
            names,
            "\"delete_from_staging\": false",
            "add a primary key or unique constraint to the destination, or let rows leave staging \
             (delete_from_staging: true); without either, every run inserts the staged rows again",
        );
    }
    Ok(())
}

/// What the config asks needs a key the destination does not have.
fn needs_key<T>(names: &Names, what: &str, hint: &str) -> Result<T> {
    Err(BackfillError::new(
        Code::InvalidColumnReference,
        format!("{what} needs a unique constraint, but destination {} has none", names.destination),
    )
    .hint(hint))
}

/// An attribute of a row type or table, as its tuple descriptor has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub type_oid: u32,
    pub dropped: bool,
}

/// For each attribute of `to`, the position in `from` of the attribute with its name
/// and type (`None` for a dropped one, which stays NULL). `None` when a live attribute
/// of `to` has no such match: the rows cannot be carried over by position.
pub fn attribute_map(from: &[Attribute], to: &[Attribute]) -> Option<Vec<Option<usize>>> {
    to.iter()
        .map(|t| {
            if t.dropped {
                return Some(None);
            }
            from.iter()
                .position(|f| !f.dropped && f.name == t.name && f.type_oid == t.type_oid)
                .map(Some)
        })
        .collect()
}

#[cfg(test)]
mod tests;
