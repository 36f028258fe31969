//! Parsers of option values shared by the subcommands, and the usage error.
//!
//! A value that cannot be right whatever happens on the network (a bad name, an address
//! without a port, a malformed duration) is refused while parsing the command line, so it
//! exits at once with status 2 instead of being retried or blamed on the network.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A usage error found after parsing (e.g. two options that contradict each other): reported
/// as one `error: ...` line like any error, but with exit status 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A node name (`--id`): 1 to 128 ASCII letters, digits and `- _ . : @`.
pub(crate) fn node_name(s: &str) -> Result<String, String> {
    networkio::proto::validate_name(s)
        .map(|()| s.to_owned())
        .map_err(|e| format!("not a valid node name: {e}"))
}

/// A `HOST:PORT` address (`127.0.0.1:7000`, `[::1]:7000`, `localhost:7000`). Only the form is
/// checked here; a host name is resolved when connecting (where a failure may be transient).
pub(crate) fn address(s: &str) -> Result<String, String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    let well_formed = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if well_formed {
        Ok(s.to_owned())
    } else {
        Err("expected HOST:PORT, e.g. 127.0.0.1:7000".to_owned())
    }
}

/// A positive duration: a number of seconds (fractions allowed, e.g. `0.5`) or a number with a
/// unit (`500ms`, `5s`, `2m`, `1h 30m`).
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => {
            Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())?
        }
        Ok(_) => Duration::ZERO,
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!("{e}; expected seconds (e.g. `0.5`) or a number with a unit (`500ms`, `5s`)")
        })?,
    };
    if parsed.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(parsed)
}

/// A number of bytes, optionally with a binary unit: `65536`, `64KiB`, `1MiB`, `1GiB`.
pub(crate) fn bytes(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| "expected a number of bytes, e.g. `65536` or `64KiB`".to_owned())?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}`; use B, KiB, MiB or GiB")),
    };
    let bytes = number
        .checked_mul(scale)
        .ok_or_else(|| "too large".to_owned())?;
    if bytes == 0 {
        return Err("must be more than zero".to_owned());
    }
    Ok(bytes)
}

/// `1 message`, `2 messages`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_port() {
        for good in [
            "127.0.0.1:7000",
            "[::1]:0",
            "localhost:7000",
            "example.org:1",
        ] {
            assert_eq!(address(good).as_deref(), Ok(good));
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            ":7000",
            "localhost",
            "host:99999",
            "",
        ] {
            assert!(address(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations_take_seconds_or_units() {
        assert_eq!(duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        for bad in ["0", "-1", "0s", "soon", "NaN", ""] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn byte_counts_take_binary_units() {
        assert_eq!(bytes("65536"), Ok(65536));
        assert_eq!(bytes("64KiB"), Ok(65536));
        assert_eq!(bytes("1MiB"), Ok(1 << 20));
        for bad in ["0", "1MB", "MiB", "-1", "99999999999999999999GiB"] {
            assert!(bytes(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "message"), "1 message");
        assert_eq!(count(0, "message"), "0 messages");
        assert_eq!(count(2, "message"), "2 messages");
    }
}
