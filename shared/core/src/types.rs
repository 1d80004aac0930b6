//! Validated domain values: parse, don't validate twice.

use std::fmt;

/// A syntactically plausible email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@`, a dot in the domain, no spaces, at most
    /// 254 characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("This field is required.".into());
        }
        if s.len() > 254 {
            return Err("Enter at most 254 characters.".into());
        }
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if valid {
            Ok(Self(s))
        } else {
            Err("Enter a valid email address.".into())
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password acceptable for a new account: 8 to 128 characters, not only
/// whitespace.
pub struct NewPassword(String);

impl NewPassword {
    /// Minimum length in characters.
    pub const MIN: usize = 8;
    /// Maximum length in characters (argon2 input stays bounded).
    pub const MAX: usize = 128;

    /// Checks the rules.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let n = raw.chars().count();
        if n < Self::MIN {
            return Err(format!("Use at least {} characters.", Self::MIN));
        }
        if n > Self::MAX {
            return Err(format!("Use at most {} characters.", Self::MAX));
        }
        if raw.trim().is_empty() {
            return Err("The password cannot be only spaces.".into());
        }
        Ok(Self(raw.to_string()))
    }

    /// The password text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An IANA time zone name such as `America/Chicago`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl TimeZone {
    /// Parses an IANA name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<chrono_tz::Tz>()
            .map(Self)
            .map_err(|_| format!("{:?} is not a known IANA time zone.", raw.trim()))
    }

    /// The canonical name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// A person's name part: trimmed, at most 150 characters, no control
/// characters.
pub fn parse_name(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.chars().count() > 150 {
        return Err("Enter at most 150 characters.".into());
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("Control characters are not allowed.".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.com",
            "ann@x",
            "a b@x.com",
            "a@@x.com",
            "a@x.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(NewPassword::parse("short").is_err());
        assert!(NewPassword::parse("        ").is_err());
        assert!(NewPassword::parse(&"x".repeat(129)).is_err());
        assert!(NewPassword::parse("long enough").is_ok());
    }

    #[test]
    fn time_zones() {
        assert_eq!(
            TimeZone::parse("America/Chicago").unwrap().name(),
            "America/Chicago"
        );
        assert!(TimeZone::parse("Mars/Olympus").is_err());
    }
}
