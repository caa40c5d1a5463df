//! Leaf validators shared by every aggregate: names, labels, identifiers. Each pushes
//! every problem it finds, as `field: message`, onto a list, so a caller reports all of
//! them at once. Nothing here knows any command, event or document.

use std::collections::BTreeMap;

/// Longest name of an entity (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// Longest label key or value.
pub const MAX_LABEL_LEN: usize = 63;
/// Most labels on one entity.
pub const MAX_LABELS: usize = 64;
/// Longest note, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Longest actor, correlation id, reason or other free-text identifier.
pub const MAX_ID_LEN: usize = 256;

/// A free-text field of at most [`MAX_ID_LEN`] bytes.
pub fn short_text_problems(field: &str, text: &str, p: &mut Vec<String>) {
    if text.len() > MAX_ID_LEN {
        p.push(format!("{field}: longer than {MAX_ID_LEN} bytes"));
    }
}

/// A node name is a DNS subdomain: dot-separated DNS labels, at most 253 characters.
pub fn node_name_problems(field: &str, name: &str, p: &mut Vec<String>) {
    if name.len() > 253 {
        p.push(format!("{field}: longer than 253 characters"));
        return;
    }
    if name.is_empty() {
        p.push(format!("{field}: must not be empty"));
        return;
    }
    if let Some(why) = name
        .split('.')
        .find_map(|label| dns_label_problem(label, MAX_NAME_LEN))
    {
        p.push(format!("{field}: {name:?}: {why}"));
    }
}

/// A lease holder names a job replica (`job/replica`), or anything an operator uses:
/// 1-253 of letters, digits, `-`, `_`, `.`, `/`.
pub fn holder_problems(field: &str, holder: &str, p: &mut Vec<String>) {
    if holder.is_empty() || holder.len() > 253 {
        p.push(format!("{field}: must be 1-253 characters"));
    } else if !holder
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        p.push(format!(
            "{field}: {holder:?} may only hold letters, digits, '-', '_', '.', '/'"
        ));
    }
}

/// A name is a DNS label: 1-63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
pub fn name_problems(field: &str, name: &str, p: &mut Vec<String>) {
    if let Some(why) = dns_label_problem(name, MAX_NAME_LEN) {
        p.push(format!("{field}: {why}"));
    }
}

pub fn label_problems(field: &str, labels: &BTreeMap<String, String>, p: &mut Vec<String>) {
    if labels.len() > MAX_LABELS {
        p.push(format!(
            "{field}: {} labels, at most {MAX_LABELS}",
            labels.len()
        ));
    }
    for (k, v) in labels {
        if let Some(why) = label_key_problem(k) {
            p.push(format!("{field}[{k:?}]: {why}"));
        }
        if v.len() > MAX_LABEL_LEN {
            p.push(format!("{field}[{k:?}]: value longer than {MAX_LABEL_LEN}"));
        } else if v.chars().any(|c| c.is_control()) {
            p.push(format!("{field}[{k:?}]: value has control characters"));
        }
    }
}

/// Label keys: 1-63 of `a-z A-Z 0-9 - _ . /`, starting alphanumeric.
pub fn label_key_problem(k: &str) -> Option<String> {
    if k.is_empty() {
        return Some("key must not be empty".into());
    }
    if k.len() > MAX_LABEL_LEN {
        return Some(format!("key longer than {MAX_LABEL_LEN}"));
    }
    if !k.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some(format!("key {k:?} must start with a letter or digit"));
    }
    if !k
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Some(format!(
            "key {k:?} may only hold letters, digits, '-', '_', '.', '/'"
        ));
    }
    None
}

pub fn dns_label_problem(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("{:?} is longer than {max} characters", s));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some(format!(
            "{s:?} may only hold lowercase letters, digits and '-'"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some(format!("{s:?} must start and end with a letter or digit"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels() {
        for bad in ["", "-a", "a-", "Abc", "a_b", &"x".repeat(64)] {
            let mut p = Vec::new();
            name_problems("delete_namespace.name", bad, &mut p);
            assert_eq!(p.len(), 1, "{bad:?} should be rejected");
            assert!(p[0].starts_with("delete_namespace.name: "), "{p:?}");
        }
        for good in ["a", "ml-team-7", &"x".repeat(63)] {
            let mut p = Vec::new();
            name_problems("delete_namespace.name", good, &mut p);
            assert!(p.is_empty(), "{good:?}: {p:?}");
        }
    }

    #[test]
    fn every_label_problem_is_reported_with_its_path() {
        let labels = BTreeMap::from([
            ("".to_string(), "v".to_string()),
            ("ok".to_string(), "x".repeat(64)),
        ]);
        let mut p = Vec::new();
        label_problems("create_namespace.labels", &labels, &mut p);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|s| s.contains("key must not be empty")));
        assert!(p.iter().any(|s| s.contains("value longer than 63")));
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        let mut p = Vec::new();
        node_name_problems("node", "gpu-07.rack-2", &mut p);
        assert!(p.is_empty(), "{p:?}");
        node_name_problems("node", "gpu_07", &mut p);
        node_name_problems("node", "", &mut p);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
