//! MLflow's search filters, orderings and pages over registered models and versions.
//!
//! A filter is clauses joined by `AND`: `name = 'x'`, `name LIKE 'res%'`,
//! `tags.team != 'a'` (or `` tags.`a.b` ``), `run_id IN ('r1', 'r2')`,
//! `version_number >= 3`, `source_path = '...'`. Strings are single- or double-quoted;
//! `LIKE` is case-sensitive SQL matching (`%`, `_`), `ILIKE` ignores case. A tag a
//! record does not have satisfies only `!=` (MLflow's client adds
//! `` tags.`mlflow.prompt.is_prompt` != 'true' `` to every model search).

use std::collections::BTreeMap;

use super::error::MlflowError;

/// What a clause compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Name,
    Tag(String),
    VersionNumber,
    RunId,
    SourcePath,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Like,
    ILike,
    In,
    NotIn,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Num(i64),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    key: Key,
    op: Op,
    value: Value,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    clauses: Vec<Clause>,
}

/// What a filter is matched against.
pub struct Record<'a> {
    pub name: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    /// For versions.
    pub version: Option<u64>,
    pub run_id: &'a str,
    pub source: &'a str,
}

/// Which records a search is over: the keys its filter may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Models,
    Versions,
}

fn bad(m: impl Into<String>) -> MlflowError {
    MlflowError::invalid(m)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokens(s: &str) -> Result<Vec<Token>, MlflowError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1
            }
            ')' => {
                out.push(Token::Close);
                i += 1
            }
            ',' => {
                out.push(Token::Comma);
                i += 1
            }
            '\'' | '"' => {
                let mut j = i + 1;
                let mut text = String::new();
                loop {
                    match chars.get(j) {
                        None => return Err(bad(format!("unterminated string in filter {s:?}"))),
                        // A doubled quote stands for itself.
                        Some(q) if *q == c && chars.get(j + 1) == Some(&c) => {
                            text.push(c);
                            j += 2;
                        }
                        Some(q) if *q == c => break,
                        Some(other) => {
                            text.push(*other);
                            j += 1;
                        }
                    }
                }
                out.push(Token::Str(text));
                i = j + 1;
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if ["!=", "<=", ">=", "<>"].contains(&two.as_str()) {
                    out.push(Token::Op(if two == "<>" { "!=".into() } else { two }));
                    i += 2;
                } else if c == '!' {
                    return Err(bad(format!("unexpected '!' in filter {s:?}")));
                } else {
                    out.push(Token::Op(c.to_string()));
                    i += 1;
                }
            }
            _ => {
                // A word: letters, digits, '_', '.', '-' and backquoted parts.
                let mut j = i;
                let mut word = String::new();
                while j < chars.len() {
                    let d = chars[j];
                    if d == '`' {
                        let end = chars[j + 1..]
                            .iter()
                            .position(|x| *x == '`')
                            .ok_or_else(|| bad(format!("unterminated ` in filter {s:?}")))?;
                        word.push('`');
                        word.extend(&chars[j + 1..j + 1 + end]);
                        word.push('`');
                        j += end + 2;
                    } else if d.is_alphanumeric() || matches!(d, '_' | '.' | '-' | '+') {
                        word.push(d);
                        j += 1;
                    } else {
                        break;
                    }
                }
                if word.is_empty() {
                    return Err(bad(format!("unexpected {c:?} in filter {s:?}")));
                }
                out.push(Token::Word(word));
                i = j;
            }
        }
    }
    Ok(out)
}

fn key(word: &str, over: Over) -> Result<Key, MlflowError> {
    let unquote = |s: &str| s.trim_matches('`').to_string();
    let lower = word.to_ascii_lowercase();
    let key = if let Some(t) = lower
        .strip_prefix("tags.")
        .or_else(|| lower.strip_prefix("tag."))
    {
        // The key keeps its case.
        let at = word.len() - t.len();
        Key::Tag(unquote(&word[at..]))
    } else {
        match lower.as_str() {
            "name" | "`name`" => Key::Name,
            "version_number" if over == Over::Versions => Key::VersionNumber,
            "run_id" if over == Over::Versions => Key::RunId,
            "source_path" if over == Over::Versions => Key::SourcePath,
            _ => return Err(bad(format!("invalid attribute key {word:?} in the filter"))),
        }
    };
    Ok(key)
}

impl Filter {
    /// Parse a filter; an empty one matches everything.
    pub fn parse(s: &str, over: Over) -> Result<Filter, MlflowError> {
        let toks = tokens(s)?;
        let mut clauses = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let Token::Word(k) = &toks[i] else {
                return Err(bad(format!("expected an attribute in filter {s:?}")));
            };
            let key = key(k, over)?;
            i += 1;
            let op = match toks.get(i) {
                Some(Token::Op(o)) => match o.as_str() {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    ">" => Op::Gt,
                    ">=" => Op::Ge,
                    _ => return Err(bad(format!("invalid comparator {o:?}"))),
                },
                Some(Token::Word(w)) => match w.to_ascii_uppercase().as_str() {
                    "LIKE" => Op::Like,
                    "ILIKE" => Op::ILike,
                    "IN" => Op::In,
                    "NOT" => match toks.get(i + 1) {
                        Some(Token::Word(n)) if n.eq_ignore_ascii_case("IN") => {
                            i += 1;
                            Op::NotIn
                        }
                        _ => return Err(bad("expected IN after NOT")),
                    },
                    _ => return Err(bad(format!("invalid comparator {w:?}"))),
                },
                _ => return Err(bad(format!("expected a comparator in filter {s:?}"))),
            };
            i += 1;
            let value = match (op, toks.get(i)) {
                (Op::In | Op::NotIn, Some(Token::Open)) => {
                    let mut items = Vec::new();
                    i += 1;
                    loop {
                        match toks.get(i) {
                            Some(Token::Str(v)) => items.push(v.clone()),
                            _ => return Err(bad("expected a quoted string in the IN list")),
                        }
                        i += 1;
                        match toks.get(i) {
                            Some(Token::Comma) => i += 1,
                            Some(Token::Close) => break,
                            _ => return Err(bad("expected ',' or ')' in the IN list")),
                        }
                    }
                    Value::List(items)
                }
                (Op::In | Op::NotIn, _) => return Err(bad("IN takes a list: ('a', 'b')")),
                (_, Some(Token::Str(v))) => Value::Str(v.clone()),
                (_, Some(Token::Word(w))) if key == Key::VersionNumber => Value::Num(
                    w.parse()
                        .map_err(|_| bad(format!("version_number: {w:?} is not a number")))?,
                ),
                _ => return Err(bad(format!("expected a quoted value in filter {s:?}"))),
            };
            let value = match (&key, value) {
                (Key::VersionNumber, Value::Str(v)) => Value::Num(
                    v.parse()
                        .map_err(|_| bad(format!("version_number: {v:?} is not a number")))?,
                ),
                (_, value) => value,
            };
            if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && key != Key::VersionNumber {
                return Err(bad("<, <=, > and >= compare version_number only"));
            }
            clauses.push(Clause { key, op, value });
            i += 1;
            match toks.get(i) {
                None => {}
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("AND") => i += 1,
                Some(_) => return Err(bad(format!("clauses are joined by AND in filter {s:?}"))),
            }
        }
        Ok(Filter { clauses })
    }

    pub fn matches(&self, r: &Record<'_>) -> bool {
        self.clauses.iter().all(|c| c.holds(r))
    }

    /// Whether its clauses on the name hold for `name`: when not, no record of that
    /// model matches, and the search need not look at its versions.
    pub fn admits_name(&self, name: &str) -> bool {
        let tags = BTreeMap::new();
        let r = Record {
            name,
            tags: &tags,
            version: None,
            run_id: "",
            source: "",
        };
        self.clauses
            .iter()
            .filter(|c| c.key == Key::Name)
            .all(|c| c.holds(&r))
    }
}

impl Clause {
    fn holds(&self, r: &Record<'_>) -> bool {
        let text = match &self.key {
            Key::Name => Some(r.name),
            Key::Tag(t) => r.tags.get(t).map(String::as_str),
            Key::RunId => Some(r.run_id),
            Key::SourcePath => Some(r.source),
            Key::VersionNumber => {
                let (Some(v), Value::Num(n)) = (r.version, &self.value) else {
                    return false;
                };
                let v = v as i64;
                return match self.op {
                    Op::Eq => v == *n,
                    Op::Ne => v != *n,
                    Op::Lt => v < *n,
                    Op::Le => v <= *n,
                    Op::Gt => v > *n,
                    Op::Ge => v >= *n,
                    Op::Like | Op::ILike | Op::In | Op::NotIn => false,
                };
            }
        };
        let Some(text) = text else {
            // A tag it does not have: only "is not" holds.
            return matches!(self.op, Op::Ne | Op::NotIn);
        };
        match (&self.value, self.op) {
            (Value::Str(v), Op::Eq) => text == v,
            (Value::Str(v), Op::Ne) => text != v,
            (Value::Str(v), Op::Like) => like(text, v),
            (Value::Str(v), Op::ILike) => like(&text.to_lowercase(), &v.to_lowercase()),
            (Value::List(vs), Op::In) => vs.iter().any(|v| v == text),
            (Value::List(vs), Op::NotIn) => !vs.iter().any(|v| v == text),
            _ => false,
        }
    }
}

/// SQL `LIKE`: `%` any run of characters, `_` any one.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // matched[j]: pattern[..j] matches text[..i].
    let mut matched = vec![false; p.len() + 1];
    matched[0] = true;
    for j in 1..=p.len() {
        matched[j] = matched[j - 1] && p[j - 1] == '%';
    }
    for &c in &t {
        let mut next = vec![false; p.len() + 1];
        for j in 1..=p.len() {
            next[j] = match p[j - 1] {
                '%' => next[j - 1] || matched[j],
                '_' => matched[j - 1],
                pc => matched[j - 1] && pc == c,
            };
        }
        matched = next;
    }
    matched[p.len()]
}

/// A field to order by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Created,
    Updated,
    Version,
}

/// `order_by` entries: `field [ASC|DESC]`, each field at most once. As in MLflow, a
/// registered model's `timestamp` is its last update and it has no `creation_timestamp`
/// key; a version has both.
pub fn order(items: &[String], over: Over) -> Result<Vec<(Field, bool)>, MlflowError> {
    let order: Vec<(Field, bool)> = items
        .iter()
        .map(|item| {
            let mut parts = item.split_whitespace();
            let field = parts.next().unwrap_or_default().to_ascii_lowercase();
            let desc = match parts.next().map(|d| d.to_ascii_uppercase()) {
                None => false,
                Some(d) if d == "ASC" => false,
                Some(d) if d == "DESC" => true,
                Some(d) => return Err(bad(format!("invalid order {d:?} in {item:?}"))),
            };
            let field = match field.trim_matches('`') {
                "name" => Field::Name,
                "timestamp" | "last_updated_timestamp" => Field::Updated,
                "creation_timestamp" if over == Over::Versions => Field::Created,
                "version_number" if over == Over::Versions => Field::Version,
                other => return Err(bad(format!("invalid order_by field {other:?}"))),
            };
            Ok((field, desc))
        })
        .collect::<Result<_, _>>()?;
    for (i, (field, _)) in order.iter().enumerate() {
        if order[..i].iter().any(|(f, _)| f == field) {
            return Err(bad(format!("order_by names {field:?} twice")));
        }
    }
    Ok(order)
}

/// A page of `items` from `token` (an offset), at most `max`, and the next token.
pub fn page<T>(items: Vec<T>, token: &str, max: usize) -> Result<(Vec<T>, String), MlflowError> {
    let offset: usize = if token.is_empty() {
        0
    } else {
        token
            .parse()
            .map_err(|_| bad(format!("invalid page_token {token:?}")))?
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(max).collect();
    let end = offset + page.len();
    let next = if end < total {
        end.to_string()
    } else {
        String::new()
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(name: &'a str, tags: &'a BTreeMap<String, String>, version: u64) -> Record<'a> {
        Record {
            name,
            tags,
            version: Some(version),
            run_id: "run-1",
            source: "s3://b/m",
        }
    }

    #[test]
    fn filters_match_as_mlflows_do() {
        let tags = BTreeMap::from([("team".to_string(), "vision".to_string())]);
        let r = rec("ResNet-50", &tags, 3);
        let m = |f: &str| Filter::parse(f, Over::Versions).unwrap().matches(&r);
        assert!(m(""));
        assert!(m("name = 'ResNet-50'"));
        assert!(m("name LIKE 'Res%'") && !m("name LIKE 'res%'") && m("name ILIKE 'res%'"));
        assert!(m("name LIKE 'ResNet-5_'"));
        assert!(m("tags.team = 'vision' AND name != 'x'"));
        assert!(
            m("tags.`mlflow.prompt.is_prompt` != 'true'"),
            "a missing tag is != anything"
        );
        assert!(!m("tags.missing = 'x'"));
        assert!(m("run_id IN ('run-0', 'run-1')") && !m("run_id IN ('run-2')"));
        assert!(m("version_number >= 3") && !m("version_number > 3") && m("version_number = '3'"));
        assert!(m("source_path = 's3://b/m'"));
        assert!(m("name = \"ResNet-50\""));
        for bad in [
            "name",
            "name = ",
            "name == 'x'",
            "nope = 'x'",
            "name = 'x' OR name = 'y'",
        ] {
            assert!(Filter::parse(bad, Over::Versions).is_err(), "{bad}");
        }
        assert!(Filter::parse("run_id = 'x'", Over::Models).is_err());
    }

    #[test]
    fn orders_and_pages() {
        let o = order(&["name DESC".into(), "timestamp".into()], Over::Models).unwrap();
        assert_eq!(o, [(Field::Name, true), (Field::Updated, false)]);
        let o = order(&["creation_timestamp DESC".into()], Over::Versions).unwrap();
        assert_eq!(o, [(Field::Created, true)]);
        assert!(order(&["version_number".into()], Over::Models).is_err());
        assert!(order(&["creation_timestamp".into()], Over::Models).is_err());
        let twice = ["name".into(), "name DESC".into()];
        assert!(order(&twice, Over::Models).is_err());
        let (p, next) = page((0..5).collect::<Vec<_>>(), "", 2).unwrap();
        assert_eq!((p, next.as_str()), (vec![0, 1], "2"));
        let (p, next) = page((0..5).collect::<Vec<_>>(), "4", 2).unwrap();
        assert_eq!((p, next.as_str()), (vec![4], ""));
        assert!(page(vec![1], "x", 2).is_err());
    }
}
