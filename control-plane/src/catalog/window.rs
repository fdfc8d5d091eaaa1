//! Event windows: timestamps given as RFC 3339, or as local date-times read in the event's IANA
//! time zone, daylight saving included.

use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;

pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("'{name}' is not an IANA time zone name (for example Europe/Paris, America/New_York, UTC)")
    })
}

const LOCAL_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
];

/// Parses an instant: RFC 3339 (with an offset) as is, or a local date-time in `zone`.
pub fn parse_instant(input: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let input = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = LOCAL_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(input, f).ok())
        .ok_or_else(|| {
            format!(
                "'{input}' is neither an RFC 3339 timestamp (2026-03-29T09:00:00+02:00) nor a local \
                 date-time (2026-03-29T09:00:00) in the event's time zone"
            )
        })?;
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        // The hour repeated when clocks go back: take the first occurrence.
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "'{input}' does not exist in {zone}: the clocks skip it for daylight saving; pick a time outside the gap"
        )),
    }
}

/// Formats an instant in the event's zone, with its offset (RFC 3339).
pub fn format_in_zone(ms: i64, zone: Tz) -> String {
    let utc = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    utc.with_timezone(&zone)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> Tz {
        parse_time_zone("Europe/Paris").unwrap()
    }

    #[test]
    fn local_time_is_read_in_the_zone_with_daylight_saving() {
        // Winter: UTC+1; summer: UTC+2.
        let winter = parse_instant("2026-01-15T09:00:00", paris()).unwrap();
        assert_eq!(winter.to_rfc3339(), "2026-01-15T08:00:00+00:00");
        let summer = parse_instant("2026-07-15T09:00", paris()).unwrap();
        assert_eq!(summer.to_rfc3339(), "2026-07-15T07:00:00+00:00");
    }

    #[test]
    fn rfc3339_keeps_its_own_offset() {
        let t = parse_instant("2026-07-15T09:00:00-04:00", paris()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-07-15T13:00:00+00:00");
    }

    #[test]
    fn skipped_local_time_is_refused_and_repeated_one_takes_the_first() {
        let err = parse_instant("2026-03-29T02:30:00", paris()).unwrap_err();
        assert!(err.contains("daylight saving"), "{err}");
        let t = parse_instant("2026-10-25T02:30:00", paris()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-10-25T00:30:00+00:00");
    }

    #[test]
    fn unknown_zone_is_refused_with_examples() {
        assert!(
            parse_time_zone("Mars/Olympus")
                .unwrap_err()
                .contains("IANA")
        );
    }

    #[test]
    fn formats_with_the_zone_offset() {
        let t = parse_instant("2026-07-15T09:00:00", paris()).unwrap();
        assert_eq!(
            format_in_zone(t.timestamp_millis(), paris()),
            "2026-07-15T09:00:00+02:00"
        );
    }
}
