//! The envelope every document kind shares — `apiVersion`, `kind`, `metadata` (name,
//! labels) around a kind's `spec` — parsed and checked once, for every kind.
//!
//! A document is JSON (the CLI turns YAML into JSON). [`parse`] is for documents a user
//! submits: unknown fields are refused, every problem is reported with its field path,
//! and the envelope's rules are checked before the spec's own. A document already in the
//! log is only decoded ([`decode_stored`]): it was checked when it was accepted, and a
//! later build with stricter rules must still fold the same history.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::validate;

/// The API version of every document kind.
pub const API_VERSION: &str = "cairn.dev/v1";
/// Most bytes of one document.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A document of one kind: the envelope around its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document<S> {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A kind's spec: its `kind` name and its own rules.
pub trait Spec: Serialize + DeserializeOwned {
    /// The `kind` a document of this spec names (`TrainingJob`, ...).
    const KIND: &'static str;
    /// Longest `metadata.name` of this kind.
    const MAX_NAME_LEN: usize = validate::MAX_NAME_LEN;

    /// Every problem with the spec (and with the metadata, where the kind has rules of
    /// its own), with field paths starting at the document (`spec.roles.worker...`).
    fn problems(&self, metadata: &Metadata) -> Vec<String>;
}

impl<S: Spec> Document<S> {
    /// Every problem with the document: the envelope's, then the spec's.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.api_version != API_VERSION {
            p.push(format!(
                "apiVersion: {:?}, expected {API_VERSION:?}",
                self.api_version
            ));
        }
        if self.kind != S::KIND {
            p.push(format!("kind: {:?}, expected {:?}", self.kind, S::KIND));
        }
        validate::name_problems("metadata.name", &self.metadata.name, &mut p);
        if self.metadata.name.len() > S::MAX_NAME_LEN && S::MAX_NAME_LEN < validate::MAX_NAME_LEN {
            p.push(format!(
                "metadata.name: at most {} characters for a {}",
                S::MAX_NAME_LEN,
                S::KIND
            ));
        }
        validate::label_problems("metadata.labels", &self.metadata.labels, &mut p);
        p.extend(self.spec.problems(&self.metadata));
        p
    }

    /// The document as the log records it: normalised JSON (defaults filled in, fields
    /// in a fixed order), the same bytes on every member.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a document always serialises to JSON")
    }
}

/// Parse and check a submitted document (JSON): the document, or every problem with
/// its field path.
pub fn parse<S: Spec>(json: &str) -> Result<Document<S>, Vec<String>> {
    if json.len() > MAX_DOCUMENT_BYTES {
        return Err(vec![format!(
            "spec: {} bytes, at most {MAX_DOCUMENT_BYTES}",
            json.len()
        )]);
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    let doc: Document<S> = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        vec![format!("{path}: {}", e.into_inner())]
    })?;
    let problems = doc.problems();
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(problems)
    }
}

/// Decode a document the log recorded, without checking it again: the answer is the
/// same whatever rules this build has. Fails only if this build cannot read it at all.
pub fn decode_stored<S: Spec>(json: &str) -> Result<Document<S>, String> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Widget {
        size: i64,
    }

    impl Spec for Widget {
        const KIND: &'static str = "Widget";
        fn problems(&self, _: &Metadata) -> Vec<String> {
            if self.size < 0 {
                vec!["spec.size: must be >= 0".into()]
            } else {
                Vec::new()
            }
        }
    }

    fn json(api: &str, kind: &str, name: &str, size: i64) -> String {
        serde_json::json!({
            "apiVersion": api, "kind": kind,
            "metadata": {"name": name}, "spec": {"size": size},
        })
        .to_string()
    }

    #[test]
    fn the_envelope_is_checked_once_for_every_kind_with_every_problem() {
        let p = parse::<Widget>(&json("v0", "Gadget", "Bad_Name", -1)).unwrap_err();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("apiVersion: \"v0\""), "{p:?}");
        assert!(
            p[1].starts_with("kind: \"Gadget\", expected \"Widget\""),
            "{p:?}"
        );
        assert!(p[2].starts_with("metadata.name: "), "{p:?}");
        assert_eq!(p[3], "spec.size: must be >= 0");
        let doc = parse::<Widget>(&json(API_VERSION, "Widget", "w", 3)).unwrap();
        assert_eq!(doc.spec.size, 3);
    }

    #[test]
    fn unknown_fields_and_huge_documents_are_refused_with_their_path() {
        let extra = r#"{"apiVersion":"cairn.dev/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":1,"colour":"red"}}"#;
        let p = parse::<Widget>(extra).unwrap_err();
        assert!(
            p[0].starts_with("spec.colour: unknown field `colour`"),
            "{p:?}"
        );
        let huge = "x".repeat(MAX_DOCUMENT_BYTES + 1);
        assert!(parse::<Widget>(&huge).unwrap_err()[0].contains("at most"));
    }

    #[test]
    fn a_stored_document_is_decoded_without_the_rules_of_this_build() {
        // Accepted once, refused by today's rules: the log still reads the same.
        let stored = json(API_VERSION, "Widget", "w", -5);
        assert!(parse::<Widget>(&stored).is_err());
        let doc = decode_stored::<Widget>(&stored).unwrap();
        assert_eq!(doc.spec.size, -5);
        // Normalised JSON reads back to the same document.
        assert_eq!(decode_stored::<Widget>(&doc.to_json()).unwrap(), doc);
        // What this build cannot read at all is an error naming the field.
        let err = decode_stored::<Widget>(
            r#"{"apiVersion":"x","kind":"Widget","metadata":{"name":"w"},"spec":{"size":"big"}}"#,
        )
        .unwrap_err();
        assert!(err.starts_with("spec.size"), "{err}");
    }
}
