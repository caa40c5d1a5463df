//! Five-field cron expressions (`m h dom mon dow`, or `@daily` and the like), evaluated
//! in UTC from the leader's timestamps.

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
