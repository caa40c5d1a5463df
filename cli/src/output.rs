//! Rendering answers as a table, JSON or YAML.

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Print `value` as JSON or YAML, or run `table` for the table format.
pub fn emit<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> Table,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        Format::Table => println!("{}", table()),
    }
    Ok(())
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

/// Unix milliseconds as RFC 3339 (UTC, milliseconds); `never` past the year 9999,
/// which RFC 3339 cannot write (a lease held until it is released).
pub fn time(ms: i64) -> String {
    use std::fmt::Write;
    if ms <= 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    let mut s = String::new();
    match write!(s, "{}", humantime::format_rfc3339_millis(t)) {
        Ok(()) => s,
        Err(_) => "never".into(),
    }
}

pub fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MiB", n as f64 / MIB)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_past_the_year_9999_are_never() {
        assert_eq!(super::time(0), "-");
        assert_eq!(super::time(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(super::time(i64::MAX), "never");
    }
}
