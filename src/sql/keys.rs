//! Conflict keys compared as the target's unique index compares them, so that what a
//! step does with staging rows is what `INSERT … ON CONFLICT` on that index would do:
//! NULLs are distinct (a key with a NULL matches nothing) unless the index is `NULLS
//! NOT DISTINCT`, and text compares by the index's collation, not staging's.

use crate::columns::Conflict;
use crate::config::ConflictAction;
use crate::ident::quote_ident;

/// Key column `i` of staging's alias `alias` (empty: unqualified), under the index's
/// collation.
fn staged(c: &Conflict, i: usize, alias: &str) -> String {
    let col = match alias {
        "" => quote_ident(&c.target[i]),
        a => format!("{a}.{}", quote_ident(&c.target[i])),
    };
    match c.rules.collations.get(i).cloned().flatten() {
        Some(coll) => format!("{col} COLLATE {coll}"),
        None => col,
    }
}

/// The key of staging's alias `alias`, each column under the index's collation.
pub fn staged_key(c: &Conflict, alias: &str) -> String {
    (0..c.target.len()).map(|i| staged(c, i, alias)).collect::<Vec<_>>().join(", ")
}

/// Whether the key of staging's row `alias` can meet another key: always under NULLS
/// NOT DISTINCT, else when it holds no NULL.
pub fn can_meet(c: &Conflict, alias: &str) -> String {
    if c.rules.nulls_not_distinct {
        return "true".to_string();
    }
    c.target
        .iter()
        .map(|k| format!("{alias}.{} IS NOT NULL", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Whether the key of staging's row `staged_alias` is the key of stored row
/// `stored_alias`.
pub fn keys_match(c: &Conflict, staged_alias: &str, stored_alias: &str) -> String {
    let eq = if c.rules.nulls_not_distinct { "IS NOT DISTINCT FROM" } else { "=" };
    (0..c.target.len())
        .map(|i| {
            format!(
                "{} {eq} {stored_alias}.{}",
                staged(c, i, staged_alias),
                quote_ident(&c.target[i])
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// One row per key of the rows of `from` (columns `cols`; `src` is each row's place in
/// staging, its ctid). A key holding a NULL is a key of its own unless NULLs are not
/// distinct (or staging declares every key column NOT NULL: none can). Of several rows
/// with one key, UPDATE keeps the last in staging's order and the others the first, as
/// applying them one by one in that order would.
pub fn one_per_key(c: &Conflict, cols: &str, from: &str, src: &str) -> String {
    let mut key: Vec<String> = (0..c.target.len()).map(|i| staged(c, i, "")).collect();
    let may_be_null = !c.target.iter().all(|k| c.not_null_in_staging.contains(k));
    if !c.rules.nulls_not_distinct && may_be_null {
        let any_null = c
            .target
            .iter()
            .map(|k| format!("{} IS NULL", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" OR ");
        key.push(format!("CASE WHEN {any_null} THEN {src} END"));
    }
    let key = key.join(", ");
    let order = if c.action == ConflictAction::Update { " DESC" } else { "" };
    format!("SELECT DISTINCT ON ({key}) {cols} FROM {from} ORDER BY {key}, {src}{order}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::KeyRules;

    fn conflict(action: ConflictAction, rules: KeyRules) -> Conflict {
        Conflict {
            action,
            target: vec!["dev".into(), "tag".into()],
            update_columns: vec!["v".into()],
            rules,
            not_null_in_staging: vec![],
        }
    }

    fn text_key(nulls_not_distinct: bool) -> KeyRules {
        KeyRules {
            nulls_not_distinct,
            collations: vec![None, Some("public.\"ci\"".into())],
            deterministic: false,
        }
    }

    #[test]
    fn keys_with_a_null_match_nothing_unless_nulls_are_not_distinct() {
        let c = conflict(ConflictAction::Update, text_key(false));
        assert_eq!(
            keys_match(&c, "n", "o"),
            "n.\"dev\" = o.\"dev\" AND n.\"tag\" COLLATE public.\"ci\" = o.\"tag\""
        );
        let c = conflict(ConflictAction::Update, text_key(true));
        assert_eq!(
            keys_match(&c, "n", "o"),
            "n.\"dev\" IS NOT DISTINCT FROM o.\"dev\" AND n.\"tag\" COLLATE public.\"ci\" IS NOT \
             DISTINCT FROM o.\"tag\""
        );
    }

    #[test]
    fn only_keys_without_a_null_meet_unless_nulls_are_not_distinct() {
        let c = conflict(ConflictAction::Restrict, text_key(false));
        assert_eq!(can_meet(&c, "s"), "s.\"dev\" IS NOT NULL AND s.\"tag\" IS NOT NULL");
        assert_eq!(staged_key(&c, "s"), "s.\"dev\", s.\"tag\" COLLATE public.\"ci\"");
        assert_eq!(can_meet(&conflict(ConflictAction::Restrict, text_key(true)), "s"), "true");
    }

    #[test]
    fn one_per_key_keeps_every_row_whose_key_has_a_null_and_the_last_for_update() {
        let c = conflict(ConflictAction::Update, text_key(false));
        assert_eq!(
            one_per_key(&c, "a, b", "moved", "backfill_src"),
            "SELECT DISTINCT ON (\"dev\", \"tag\" COLLATE public.\"ci\", CASE WHEN \"dev\" IS NULL \
             OR \"tag\" IS NULL THEN backfill_src END) a, b \
             FROM moved ORDER BY \"dev\", \"tag\" COLLATE public.\"ci\", CASE WHEN \"dev\" IS NULL \
             OR \"tag\" IS NULL THEN backfill_src END, backfill_src DESC"
        );
    }

    #[test]
    fn one_per_key_needs_no_null_test_where_staging_declares_the_key_not_null() {
        let mut c = conflict(ConflictAction::Nothing, text_key(false));
        c.not_null_in_staging = vec!["dev".into(), "tag".into(), "v".into()];
        assert_eq!(
            one_per_key(&c, "a", "t", "s"),
            "SELECT DISTINCT ON (\"dev\", \"tag\" COLLATE public.\"ci\") a FROM t ORDER \
             BY \"dev\", \"tag\" COLLATE public.\"ci\", s"
        );
        // one key column that may be NULL: the test stays
        c.not_null_in_staging = vec!["dev".into()];
        assert!(one_per_key(&c, "a", "t", "s").contains("CASE WHEN \"dev\" IS NULL OR \"tag\""));
    }

    #[test]
    fn one_per_key_under_nulls_not_distinct_groups_nulls_and_nothing_keeps_the_first() {
        let c = conflict(ConflictAction::Nothing, text_key(true));
        assert_eq!(
            one_per_key(&c, "a", "t", "s"),
            "SELECT DISTINCT ON (\"dev\", \"tag\" COLLATE public.\"ci\") a FROM t ORDER \
             BY \"dev\", \"tag\" COLLATE public.\"ci\", s"
        );
    }
}
