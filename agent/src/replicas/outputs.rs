//! What a run reports about itself: the agent names a file in `CAIRN_RUN_OUTPUTS`, the
//! run writes `{"metrics": {"accuracy": 0.93}, "params": {"lr": "0.001"}}` there, and
//! the agent sends it with the exit. The job's model version records it.

use std::path::Path;

use cairn_proto as pb;
use serde_json::Value;

/// The environment variable naming the file.
pub const ENV: &str = "CAIRN_RUN_OUTPUTS";
/// Largest file read.
const MAX_BYTES: u64 = 1 << 20;

/// The outputs a run wrote at `path`, if it wrote any that read; a file that does not
/// read is logged and left out (the run's exit is reported either way).
pub async fn read(path: &Path) -> Option<pb::RunOutputs> {
    let len = tokio::fs::metadata(path).await.ok()?.len();
    if len > MAX_BYTES {
        tracing::warn!(path = %path.display(), len, "the run's outputs file is too large; left out");
        return None;
    }
    let bytes = tokio::fs::read(path).await.ok()?;
    match parse(&bytes) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the run's outputs file does not read; left out");
            None
        }
    }
}

/// `{"metrics": {name: number}, "params": {name: scalar}}`, either part optional.
pub fn parse(bytes: &[u8]) -> Result<pb::RunOutputs, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let Value::Object(top) = v else {
        return Err("not a JSON object".into());
    };
    let mut out = pb::RunOutputs::default();
    for (key, part) in top {
        if key != "metrics" && key != "params" {
            return Err(format!("{key}: expected metrics or params"));
        }
        let Value::Object(entries) = part else {
            return Err(format!("{key}: not a JSON object"));
        };
        for (name, value) in entries {
            match (key.as_str(), value) {
                ("metrics", Value::Number(n)) => {
                    out.metrics.insert(name, n.to_string());
                }
                ("metrics", other) => {
                    return Err(format!("metrics.{name}: {other} is not a number"))
                }
                ("params", Value::String(s)) => {
                    out.params.insert(name, s);
                }
                ("params", v @ (Value::Number(_) | Value::Bool(_))) => {
                    out.params.insert(name, v.to_string());
                }
                ("params", other) => return Err(format!("params.{name}: {other} is not a scalar")),
                (other, _) => return Err(format!("{other}: expected metrics or params")),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_numbers_and_params_scalars_as_written() {
        let o = parse(br#"{"metrics": {"accuracy": 0.93, "loss": 1e-3}, "params": {"lr": "0.001", "epochs": 3, "amp": true}}"#).unwrap();
        assert_eq!(o.metrics["accuracy"], "0.93");
        assert_eq!(o.metrics["loss"], "0.001");
        assert_eq!(o.params["lr"], "0.001");
        assert_eq!(o.params["epochs"], "3");
        assert_eq!(o.params["amp"], "true");
        assert!(parse(br#"{"metrics": {"accuracy": "high"}}"#)
            .unwrap_err()
            .contains("not a number"));
        assert!(parse(br#"{"weights": {}}"#).is_err());
        assert!(parse(b"[1]").is_err());
        assert!(parse(br#"{"params": {}}"#).unwrap().metrics.is_empty());
    }
}
