//! Where the operation connects: the libpq connection URL built from the settings, and the
//! password-free name of the server (`host:port/db`) used in events, errors and replies.

use std::fmt::Write as _;

/// The server the operation writes to.
#[derive(Clone)]
pub(crate) struct DbTarget {
    /// What libpq gets (contains the password; never shown).
    pub conninfo: String,
    /// Host as written in the settings or the URL.
    pub host: String,
    pub port: u16,
    pub database: String,
    /// Texts to hide from messages that come from libpq (the password, raw and encoded).
    secrets: Vec<String>,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTarget")
            .field("server", &self.display())
            .finish_non_exhaustive()
    }
}

impl DbTarget {
    /// From host / port / database / user / password settings.
    pub fn from_parts(
        host: &str,
        port: u16,
        database: &str,
        user: &str,
        password: &str,
        connect_timeout_ms: u64,
    ) -> Self {
        let mut conninfo = String::from("postgres://");
        conninfo.push_str(&percent_encode(user));
        if !password.is_empty() {
            conninfo.push(':');
            conninfo.push_str(&percent_encode(password));
        }
        conninfo.push('@');
        if host.contains(':') && !host.starts_with('[') {
            // An IPv6 literal goes in brackets.
            let _ = write!(conninfo, "[{host}]");
        } else if host.starts_with('[') {
            conninfo.push_str(host);
        } else {
            conninfo.push_str(&percent_encode(host));
        }
        let _ = write!(conninfo, ":{port}/{}", percent_encode(database));
        let _ = write!(
            conninfo,
            "?connect_timeout={}",
            libpq_connect_timeout(connect_timeout_ms)
        );
        Self {
            conninfo,
            host: host.to_string(),
            port,
            database: database.to_string(),
            secrets: secrets(password, user, database),
        }
    }

    /// From a `postgres://user:password@host:port/db?params` URL.
    pub fn from_url(url: &str, connect_timeout_ms: u64) -> Result<Self, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                format!(
                    "'{}' is not a PostgreSQL URL (expected postgres://user:password@host:port/database)",
                    interop::config::redact_url(url)
                )
            })?;
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, p),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (percent_decode(user)?, percent_decode(pw)?),
                None => (percent_decode(u)?, String::new()),
            },
            None => (String::new(), String::new()),
        };
        let (host, port) = split_host_port(hostport)?;
        let host = if host.is_empty() {
            "localhost".to_string()
        } else {
            percent_decode(&host)?
        };
        let database = match percent_decode(path)? {
            // libpq's default database is the user's name.
            d if d.is_empty() => user.clone(),
            d => d,
        };
        let mut conninfo = url.to_string();
        let has_timeout = query.is_some_and(|q| {
            q.split('&')
                .any(|kv| kv.split('=').next() == Some("connect_timeout"))
        });
        if !has_timeout {
            conninfo.push(if query.is_some() { '&' } else { '?' });
            let _ = write!(
                conninfo,
                "connect_timeout={}",
                libpq_connect_timeout(connect_timeout_ms)
            );
        }
        Ok(Self {
            conninfo,
            secrets: secrets(&password, &user, &database),
            host,
            port,
            database,
        })
    }

    /// `host:port/database`, for events and errors.
    pub fn display(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}/{}", self.host, self.port, self.database)
        } else {
            format!("{}:{}/{}", self.host, self.port, self.database)
        }
    }

    /// What a `FormationStored` reply says: `postgres:<host>/<db>.public.formation`.
    pub fn location(&self) -> String {
        format!("postgres:{}/{}.public.formation", self.host, self.database)
    }

    /// A text from libpq or diesel with the password masked, should it ever be echoed.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

/// The password forms to mask; a password equal to the user or database name is shown
/// anyway with them, so masking it would only hide those names.
fn secrets(password: &str, user: &str, database: &str) -> Vec<String> {
    if password.is_empty() || password == user || password == database {
        return Vec::new();
    }
    let mut v = vec![password.to_string()];
    let encoded = percent_encode(password);
    if encoded != password {
        v.push(encoded);
    }
    v
}

/// libpq takes whole seconds and treats anything below 2 as 2.
fn libpq_connect_timeout(ms: u64) -> u64 {
    ms.div_ceil(1000).max(2)
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port '{p}' in the PostgreSQL URL"))
    };
    if let Some(inner) = hostport.strip_prefix('[') {
        // [ipv6]:port
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in host '{hostport}' of the PostgreSQL URL"))?;
        let port = match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => parse_port(p)?,
            _ => 5432,
        };
        return Ok((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, p)) if !p.is_empty() => Ok((host.to_string(), parse_port(p)?)),
        Some((host, _)) => Ok((host.to_string(), 5432)),
        None => Ok((hostport.to_string(), 5432)),
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    "invalid percent-encoding in the PostgreSQL URL (use %XX)".to_string()
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| "percent-encoding in the PostgreSQL URL is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_percent_encoded() {
        let t = DbTarget::from_parts("db", 5432, "Demo Data", "us@r", "p@ss:w/rd%", 3000);
        assert_eq!(
            t.conninfo,
            "postgres://us%40r:p%40ss%3Aw%2Frd%25@db:5432/Demo%20Data?connect_timeout=3"
        );
        assert_eq!(t.display(), "db:5432/Demo Data");
        assert_eq!(t.location(), "postgres:db/Demo Data.public.formation");
        assert_eq!(t.redact("x p@ss:w/rd% y"), "x *** y");
        assert!(!format!("{t:?}").contains("p@ss"));
    }

    #[test]
    fn empty_password_and_ipv6() {
        let t = DbTarget::from_parts("::1", 5433, "d", "u", "", 500);
        assert_eq!(t.conninfo, "postgres://u@[::1]:5433/d?connect_timeout=2");
        assert_eq!(t.display(), "[::1]:5433/d");
    }

    #[test]
    fn url_is_parsed_for_display_and_gets_a_connect_timeout() {
        let t = DbTarget::from_url("postgres://bob:s%40cret@10.0.0.5:6543/sales", 7000).unwrap();
        assert_eq!(t.host, "10.0.0.5");
        assert_eq!(t.port, 6543);
        assert_eq!(t.database, "sales");
        assert_eq!(
            t.conninfo,
            "postgres://bob:s%40cret@10.0.0.5:6543/sales?connect_timeout=7"
        );
        assert_eq!(t.redact("a s@cret b s%40cret"), "a *** b ***");

        let t = DbTarget::from_url("postgresql://bob@h/?sslmode=disable", 1000).unwrap();
        assert_eq!(t.display(), "h:5432/bob");
        assert!(t.conninfo.ends_with("?sslmode=disable&connect_timeout=2"));

        let t = DbTarget::from_url("postgres://h/d?connect_timeout=9", 1000).unwrap();
        assert_eq!(t.conninfo, "postgres://h/d?connect_timeout=9");
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        let e = DbTarget::from_url("mysql://u:topsecret@h/d", 1000).unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(DbTarget::from_url("postgres://h:notaport/d", 1000).is_err());
        assert!(DbTarget::from_url("postgres://u:%zz@h/d", 1000).is_err());
    }
}
