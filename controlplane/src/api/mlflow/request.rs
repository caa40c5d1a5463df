//! Reading an MLflow request: its parameters come from the query string (GET, with
//! repeated keys for lists) or from a JSON body (POST, PATCH and DELETE), and are read
//! into each endpoint's own struct. Numbers and booleans may arrive as strings (a query
//! string has nothing else; `version` is a string in MLflow's API).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::MlflowError;

/// Who MLflow requests are recorded as when the facade serves plain HTTP (no caller is
/// authenticated).
pub const ANONYMOUS: &str = "mlflow/anonymous";

/// The parameters of one request, as a JSON object.
pub struct Params(Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = MlflowError;

    async fn from_request(req: Request, state: &S) -> Result<Self, MlflowError> {
        let query = req.uri().query().map(str::to_string);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| MlflowError::invalid(format!("reading the request body: {e}")))?;
        let mut params = match query {
            Some(q) => from_query(&q),
            None => Map::new(),
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| MlflowError::invalid(format!("the request body is not JSON: {e}")))?;
            let Value::Object(fields) = v else {
                return Err(MlflowError::invalid(
                    "the request body is not a JSON object",
                ));
            };
            params.extend(fields);
        }
        Ok(Params(params))
    }
}

impl Params {
    /// The parameters as `T`; a missing or malformed one is MLflow's invalid-parameter
    /// error naming it.
    pub fn read<T: DeserializeOwned>(self) -> Result<T, MlflowError> {
        serde_json::from_value(Value::Object(self.0)).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("missing field `") {
                Some(rest) => MlflowError::invalid(format!(
                    "Missing value for required parameter '{}'",
                    rest.split('`').next().unwrap_or_default()
                )),
                None => MlflowError::invalid(format!("invalid parameters: {msg}")),
            }
        })
    }
}

/// `a=1&b=x&b=y` as `{"a": "1", "b": ["x", "y"]}` (percent- and `+`-decoded).
fn from_query(q: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), Value::String(decode(v)));
        match out.get_mut(&k) {
            None => {
                out.insert(k, v);
            }
            Some(Value::Array(items)) => items.push(v),
            Some(first) => {
                let first = first.take();
                out.insert(k, Value::Array(vec![first, v]));
            }
        }
    }
    out
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A number, or a string holding one.
pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number >= 0"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a whole number >= 0"))),
        other => Err(serde::de::Error::custom(format!("{other} is not a number"))),
    }
}

/// An optional number, or a string holding one.
pub fn optional_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    number(d).map(Some)
}

/// A boolean, or a string holding one.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "{other} is not true or false"
        ))),
    }
}

/// A list, or one item (a query string with the key once).
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(serde::de::Error::custom(format!("{other} is not a string"))),
            })
            .collect(),
        Value::String(s) => Ok(vec![s]),
        Value::Null => Ok(Vec::new()),
        other => Err(serde::de::Error::custom(format!("{other} is not a list"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Search {
        #[serde(default)]
        filter: String,
        #[serde(default, deserialize_with = "optional_number")]
        max_results: Option<u64>,
        #[serde(default, deserialize_with = "list")]
        order_by: Vec<String>,
    }

    #[test]
    fn query_strings_read_with_repeated_keys_and_numbers_as_strings() {
        let p = Params(from_query(
            "filter=name+LIKE+%27a%25%27&max_results=5&order_by=name+DESC&order_by=creation_timestamp",
        ));
        let s: Search = p.read().unwrap();
        assert_eq!(s.filter, "name LIKE 'a%'");
        assert_eq!(s.max_results, Some(5));
        assert_eq!(s.order_by, ["name DESC", "creation_timestamp"]);
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Named {
            name: String,
        }
        let err = Params(Map::new()).read::<Named>().unwrap_err();
        assert_eq!(err.message, "Missing value for required parameter 'name'");
    }
}
