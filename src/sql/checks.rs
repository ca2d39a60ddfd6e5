//! Checks of statement text, for the unit tests of every `sql` file.

/// Every `$n` a statement uses with the casts it gets there (`$1::oid::regclass`),
/// once each, ordered by `n`; panics unless the numbers run from 1 without a gap.
pub fn params(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut found: Vec<(usize, String)> = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let n = sql[start + 1..i].parse().unwrap();
        while sql[i..].starts_with("::") {
            i += 2;
            while b.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || b"_[]".contains(c)) {
                i += 1;
            }
        }
        found.push((n, sql[start..i].to_string()));
    }
    found.sort();
    found.dedup();
    let mut numbers: Vec<usize> = found.iter().map(|(n, _)| *n).collect();
    numbers.dedup();
    assert_eq!(numbers, (1..=numbers.len()).collect::<Vec<_>>(), "parameters with a gap: {sql}");
    found.into_iter().map(|(_, s)| s).collect()
}

#[test]
fn params_are_read_with_their_casts() {
    assert_eq!(
        params("SELECT $2::text[], $1, $1::oid::regclass, $2::text[] < now()"),
        ["$1", "$1::oid::regclass", "$2::text[]"]
    );
    let ten = (1..=10).map(|n| format!("${n}")).collect::<Vec<_>>();
    assert_eq!(params(&format!("VALUES ({})", ten.join(", "))), ten);
    assert_eq!(params("SELECT '$' || 1"), Vec::<String>::new());
}

#[test]
#[should_panic(expected = "parameters with a gap")]
fn params_must_not_skip_a_number() {
    params("SELECT $1, $3");
}
