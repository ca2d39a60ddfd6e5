//! A chunk's space-partition CHECK constraint, read into hash ranges.

use super::SpaceRange;

/// Reads the space range out of a chunk CHECK constraint as `pg_get_constraintdef`
/// prints it, e.g. `CHECK (((_timescaledb_functions.get_partition_hash(device_id) >= 1073741823)
/// AND (_timescaledb_functions.get_partition_hash(device_id) < 2147483647)))`.
/// Returns `None` for anything else, so the caller falls back to matching on time.
pub fn parse_space_check(def: &str) -> Option<SpaceRange> {
    const FUNC: &str = "_timescaledb_functions.get_partition_hash(";
    let body = def.trim().strip_prefix("CHECK")?;
    let mut rest = body;
    let mut column: Option<String> = None;
    let (mut lo, mut hi) = (None, None);
    let mut leftover = String::new();
    while let Some(pos) = rest.find(FUNC) {
        leftover.push_str(&rest[..pos]);
        let after = &rest[pos + FUNC.len()..];
        let (col, after) = read_ident(after)?;
        let after = after.strip_prefix(')')?.trim_start();
        let (op, after) = if let Some(a) = after.strip_prefix(">=") {
            (">=", a)
        } else if let Some(a) = after.strip_prefix('<') {
            ("<", a)
        } else {
            return None;
        };
        let after = after.trim_start();
        let end = after.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(after.len());
        let value: i64 = after[..end].parse().ok()?;
        match column.as_deref() {
            None => column = Some(col),
            Some(c) if c == col => {}
            Some(_) => return None,
        }
        match op {
            ">=" if lo.is_none() => lo = Some(value),
            "<" if hi.is_none() => hi = Some(value),
            _ => return None,
        }
        rest = &after[end..];
    }
    leftover.push_str(rest);
    // nothing but parentheses, AND and blanks may remain
    let residue = leftover.replace("AND", "");
    if residue.chars().any(|c| !(c == '(' || c == ')' || c.is_whitespace())) {
        return None;
    }
    column.map(|column| SpaceRange { column, lo, hi })
}

/// Reads an identifier as `pg_get_constraintdef` prints it: bare or double-quoted.
fn read_ident(s: &str) -> Option<(String, &str)> {
    if let Some(q) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if let Some((_, '"')) = chars.peek() {
                    out.push('"');
                    chars.next();
                } else {
                    return Some((out, &q[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))?;
        if end == 0 {
            return None;
        }
        Some((s[..end].to_string(), &s[end..]))
    }
}

/// The hash ranges of a chunk's space-partition constraints (none: the chunk spans
/// every partition), or the first constraint that cannot be read. A chunk matched on
/// time alone would take its siblings' rows too, and leave them partially compressed.
pub fn space_ranges(defs: &[String]) -> Result<Vec<SpaceRange>, String> {
    defs.iter().map(|d| parse_space_check(d).ok_or_else(|| d.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_checks_parse() {
        let both = "CHECK (((_timescaledb_functions.get_partition_hash(device_id) >= 1073741823) \
            AND (_timescaledb_functions.get_partition_hash(device_id) < 2147483647)))";
        assert_eq!(
            parse_space_check(both),
            Some(SpaceRange {
                column: "device_id".into(),
                lo: Some(1073741823),
                hi: Some(2147483647)
            })
        );
        let upper = "CHECK ((_timescaledb_functions.get_partition_hash(device_id) < 1073741823))";
        assert_eq!(
            parse_space_check(upper),
            Some(SpaceRange { column: "device_id".into(), lo: None, hi: Some(1073741823) })
        );
        let lower = "CHECK ((_timescaledb_functions.get_partition_hash(\"Dev \"\"x\") >= 5))";
        assert_eq!(
            parse_space_check(lower),
            Some(SpaceRange { column: "Dev \"x".into(), lo: Some(5), hi: None })
        );
    }

    #[test]
    fn other_checks_do_not_parse() {
        assert_eq!(
            parse_space_check(
                "CHECK ((\"time\" >= '2024-01-01 00:00:00+00'::timestamp with time zone))"
            ),
            None
        );
        assert_eq!(parse_space_check("CHECK ((value > (0)::double precision))"), None);
        // a user's extra condition next to the hash range: not ours to interpret
        assert_eq!(
            parse_space_check(
                "CHECK (((_timescaledb_functions.get_partition_hash(d) < 5) AND (d > 3)))"
            ),
            None
        );
        // two different columns in one constraint
        assert_eq!(
            parse_space_check(
                "CHECK (((_timescaledb_functions.get_partition_hash(a) >= 1) AND \
                (_timescaledb_functions.get_partition_hash(b) < 5)))"
            ),
            None
        );
        assert_eq!(
            parse_space_check("CHECK ((_timescaledb_functions.get_partition_hash(a) = 5))"),
            None
        );
        assert_eq!(parse_space_check("UNIQUE (a)"), None);
    }

    #[test]
    fn a_constraint_that_cannot_be_read_is_named() {
        let ok = "CHECK ((_timescaledb_functions.get_partition_hash(device_id) < 1073741823))"
            .to_string();
        let odd = "CHECK ((_timescaledb_functions.get_partition_hash(device_id) <> 5))".to_string();
        assert_eq!(space_ranges(&[]), Ok(vec![]));
        assert_eq!(space_ranges(std::slice::from_ref(&ok)).unwrap().len(), 1);
        assert_eq!(space_ranges(&[ok, odd.clone()]), Err(odd));
    }
}
