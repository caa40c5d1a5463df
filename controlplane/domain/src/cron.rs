//! Cron schedules (`kind: TrainingCron`): five-field cron expressions evaluated in UTC
//! from the leader's timestamps, and the cron's state in the fold.
//!
//! The leader proposes `TriggerCron` for the next due time; `decide` accepts a trigger
//! only for exactly the time that follows the last one it recorded, so a trigger proposed
//! twice (by an old and a new leader) starts one run, and a new leader that finds runs
//! due starts each of them in turn: a failover neither doubles nor skips a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{JobSpec, Metadata, API_VERSION};

/// A parsed schedule: the allowed values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Day-of-month and day-of-week both restricted: either may match (as cron does).
    either_day: bool,
}

fn field(text: &str, lo: u32, hi: u32, name: &str) -> Result<(Vec<bool>, bool), String> {
    let mut allowed = vec![false; hi as usize + 1];
    let restricted = text != "*";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse::<u32>().map_err(|_| format!("{name}: {part:?}"))?;
            let b = b.parse::<u32>().map_err(|_| format!("{name}: {part:?}"))?;
            (a, b)
        } else {
            let a = range
                .parse::<u32>()
                .map_err(|_| format!("{name}: {part:?}"))?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{name}: {part:?} is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            allowed[v as usize] = true;
            v += step;
        }
    }
    Ok((allowed, restricted))
}

impl Schedule {
    /// `m h dom mon dow`, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            t => t,
        };
        let f: Vec<&str> = text.split_whitespace().collect();
        let [m, h, dom, mon, dow] = f[..] else {
            return Err(format!(
                "{text:?}: five fields expected (minute hour day-of-month month day-of-week)"
            ));
        };
        let (minutes, _) = field(m, 0, 59, "minute")?;
        let (hours, _) = field(h, 0, 23, "hour")?;
        let (days, dom_restricted) = field(dom, 1, 31, "day-of-month")?;
        let (months, _) = field(mon, 1, 12, "month")?;
        let (mut weekdays, dow_restricted) = field(dow, 0, 7, "day-of-week")?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            either_day: dom_restricted && dow_restricted,
        })
    }

    fn day_matches(&self, days_since_epoch: i64) -> bool {
        let (_, month, day) = civil_from_days(days_since_epoch);
        if !self.months[month as usize] {
            return false;
        }
        // 1970-01-01 was a Thursday (4).
        let weekday = (days_since_epoch + 4).rem_euclid(7) as usize;
        let (d, w) = (self.days[day as usize], self.weekdays[weekday]);
        if self.either_day {
            d || w
        } else {
            d && w
        }
    }

    /// The first time strictly after `ms` (Unix ms, UTC) that the schedule fires, within
    /// eight years.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let start_minute = ms.div_euclid(60_000) + 1;
        let first_day = start_minute.div_euclid(1440);
        for day in first_day..first_day + 8 * 366 {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day {
                start_minute.rem_euclid(1440)
            } else {
                0
            };
            for m in from..1440 {
                if self.hours[(m / 60) as usize] && self.minutes[(m % 60) as usize] {
                    return Some((day * 1440 + m) * 60_000);
                }
            }
        }
        None
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    /// Skip a run while the previous one is active.
    Forbid,
    /// Cancel the active run and start the new one.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CronSpec {
    pub schedule: String,
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    #[serde(default)]
    pub suspend: bool,
    /// A run more than this late is skipped (none: runs however late).
    #[serde(default)]
    pub deadline_seconds: Option<i64>,
    #[serde(default = "default_history")]
    pub history_limit: i64,
    pub job_template: JobSpec,
}

fn default_history() -> i64 {
    10
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CronDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: CronSpec,
}

/// Parse and check a cron document (JSON); problems name their field path.
pub fn parse(json: &str) -> Result<CronDocument, Vec<String>> {
    if json.len() > crate::job::MAX_SPEC_BYTES {
        return Err(vec!["spec: too large".into()]);
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    let doc: CronDocument = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        vec![format!("{path}: {}", e.into_inner())]
    })?;
    let mut p = Vec::new();
    if doc.api_version != API_VERSION {
        p.push(format!(
            "apiVersion: {:?}, expected {API_VERSION:?}",
            doc.api_version
        ));
    }
    if doc.kind != "TrainingCron" {
        p.push(format!("kind: {:?}, expected \"TrainingCron\"", doc.kind));
    }
    // Run names append `-<minutes since epoch>` (8 digits): keep room for it.
    crate::validate::name_problems("metadata.name", &doc.metadata.name, &mut p);
    if doc.metadata.name.len() > 50 {
        p.push("metadata.name: at most 50 characters for a cron".into());
    }
    if let Err(e) = Schedule::parse(&doc.spec.schedule) {
        p.push(format!("spec.schedule: {e}"));
    }
    if doc.spec.history_limit < 0 {
        p.push("spec.historyLimit: must be >= 0".into());
    }
    if doc.spec.deadline_seconds.is_some_and(|d| d <= 0) {
        p.push("spec.deadlineSeconds: must be > 0".into());
    }
    // The template must make a valid job.
    let job = run_document(&doc, 0);
    for problem in crate::job::problems(&job) {
        if let Some(rest) = problem.strip_prefix("spec.") {
            p.push(format!("spec.jobTemplate.{rest}"));
        } else if !problem.starts_with("metadata.name") {
            p.push(problem);
        }
    }
    if p.is_empty() {
        Ok(doc)
    } else {
        Err(p)
    }
}

/// The job document of the run scheduled at `scheduled_ms`.
pub fn run_document(cron: &CronDocument, scheduled_ms: i64) -> crate::job::JobDocument {
    let mut labels = cron.metadata.labels.clone();
    labels.insert("cairn.dev/cron".into(), cron.metadata.name.clone());
    crate::job::JobDocument {
        api_version: API_VERSION.into(),
        kind: "TrainingJob".into(),
        metadata: Metadata {
            name: format!("{}-{}", cron.metadata.name, scheduled_ms / 60_000),
            labels,
        },
        spec: cron.spec.job_template.clone(),
    }
}

/// A cron as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronState {
    pub doc: CronDocument,
    pub schedule: Schedule,
    pub created_ms: i64,
    /// The last time a run was due (started or skipped).
    pub last_scheduled_ms: Option<i64>,
    /// Runs started, by job name → scheduled time.
    pub runs: BTreeMap<String, i64>,
    pub deleted: bool,
}

impl CronState {
    /// When the next run is due.
    pub fn next_due(&self) -> Option<i64> {
        self.schedule
            .next_after(self.last_scheduled_ms.unwrap_or(self.created_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    /// 2026-11-23T10:00:00Z, a Monday.
    const MONDAY_10H: i64 = 1_795_428_000_000;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(MONDAY_10H / 86_400_000), (2026, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn next_times() {
        let every5 = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(every5.next_after(MONDAY_10H), Some(MONDAY_10H + 5 * MIN));
        assert_eq!(
            every5.next_after(MONDAY_10H + 1),
            Some(MONDAY_10H + 5 * MIN)
        );
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(
            daily.next_after(MONDAY_10H),
            Some(MONDAY_10H + 14 * 60 * MIN)
        );
        // Weekdays at 09:30: Monday 10:00 → Tuesday 09:30.
        let weekdays = Schedule::parse("30 9 * * 1-5").unwrap();
        assert_eq!(
            weekdays.next_after(MONDAY_10H),
            Some(MONDAY_10H + (23 * 60 + 30) * MIN)
        );
        // Sundays (0 or 7) at midnight: six days away.
        let sunday = Schedule::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday.next_after(MONDAY_10H),
            Some(MONDAY_10H + (6 * 24 - 10) * 60 * MIN)
        );
        // February 29th only: in 2028.
        let leap = Schedule::parse("0 0 29 2 *").unwrap();
        let next = leap.next_after(MONDAY_10H).unwrap();
        assert_eq!(civil_from_days(next / 86_400_000), (2028, 2, 29));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
