//! The one place that turns names into SQL text.
//!
//! Every identifier is always double-quoted, with embedded quotes doubled, so that no
//! name (mixed case, spaces, quotes, keywords, `x; DROP TABLE y`) can change the
//! meaning of a statement. Values never go through here: they are `$n` parameters.

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `schema.name`, both parts quoted.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// A comma-separated list of quoted identifiers, optionally prefixed by `alias.`.
pub fn quote_list<S: AsRef<str>>(names: &[S], alias: Option<&str>) -> String {
    names
        .iter()
        .map(|n| match alias {
            Some(a) => format!("{a}.{}", quote_ident(n.as_ref())),
            None => quote_ident(n.as_ref()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A qualified table name: schema and relation, kept apart until they are quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName { schema: schema.into(), name: name.into() }
    }
    /// The quoted form, safe to place in SQL text.
    pub fn quoted(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }
}

impl std::fmt::Display for QualifiedName {
    /// The readable form used in messages: `schema.name`, without quotes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Parses a table name as SQL reads it (`name`, `schema.name`, `"Mixed Case"`,
/// `"a""b"`): unquoted parts are folded to lower case. Returns (schema, name), or
/// `None` when the text is not valid name syntax (`x; DROP TABLE y`, `a.b.c.d`, ``).
pub fn parse_qualified_name(text: &str) -> Option<(Option<String>, String)> {
    let mut parts: Vec<String> = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return None,
                }
            }
            if part.is_empty() {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    part.extend(c.to_lowercase());
                    chars.next();
                } else {
                    break;
                }
            }
            if part.is_empty() || part.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                return None;
            }
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return None,
        }
    }
    match parts.len() {
        1 => Some((None, parts.pop().unwrap())),
        2 => {
            let name = parts.pop().unwrap();
            Some((parts.pop(), name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_quoted() {
        assert_eq!(quote_ident("event_data"), "\"event_data\"");
        assert_eq!(quote_ident("MixedCase"), "\"MixedCase\"");
    }

    #[test]
    fn embedded_quotes_are_doubled() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("\""), "\"\"\"\"");
    }

    #[test]
    fn injection_text_stays_one_identifier() {
        let q = quote_ident("x\"; DROP TABLE y; --");
        assert_eq!(q, "\"x\"\"; DROP TABLE y; --\"");
        // the only unescaped quotes are the outer pair
        let inner = &q[1..q.len() - 1];
        assert!(!inner.replace("\"\"", "").contains('"'));
    }

    #[test]
    fn qualified_and_lists() {
        assert_eq!(quote_qualified("my schema", "t"), "\"my schema\".\"t\"");
        assert_eq!(quote_list(&["a", "B c"], None), "\"a\", \"B c\"");
        assert_eq!(quote_list(&["a", "b"], Some("s")), "s.\"a\", s.\"b\"");
        let q = QualifiedName::new("public", "Event Data");
        assert_eq!(q.quoted(), "\"public\".\"Event Data\"");
        assert_eq!(q.to_string(), "public.Event Data");
    }

    #[test]
    fn parse_names() {
        assert_eq!(parse_qualified_name("event_data"), Some((None, "event_data".into())));
        assert_eq!(parse_qualified_name("Event_Data"), Some((None, "event_data".into())));
        assert_eq!(parse_qualified_name("public.t"), Some((Some("public".into()), "t".into())));
        assert_eq!(
            parse_qualified_name("\"My Schema\".\"My Table\""),
            Some((Some("My Schema".into()), "My Table".into()))
        );
        assert_eq!(parse_qualified_name("\"a\"\"b\""), Some((None, "a\"b".into())));
        assert_eq!(
            parse_qualified_name(" s.\"x; DROP TABLE y\" "),
            Some((Some("s".into()), "x; DROP TABLE y".into()))
        );
        for bad in [
            "x; DROP TABLE y",
            "",
            "a.b.c",
            "\"unclosed",
            "a..b",
            "1abc",
            "a b",
            "\"\"",
            "a.",
            ".a",
        ] {
            assert_eq!(parse_qualified_name(bad), None, "{bad:?}");
        }
    }
}
