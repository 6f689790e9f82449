//! HTTP call targets and the allow-list patterns that let a plugin reach them (pure: the
//! embedder decides what an upstream name resolves to; this only parses and matches).
//!
//! A target is what a plugin passes as the call's "cluster": `name` (maybe an nginx
//! `upstream {}` block), `name:port`, `a.b.c.d[:port]`, `[v6][:port]`, or a bare v6 literal.
//! A pattern is `*`, `name`, `*.domain`, an IP, or an IP network (`10.0.0.0/8`,
//! `[fe80::]/10`), each optionally followed by `:port` (no port = any port).
//!
//! Loopback, unspecified (0.0.0.0 and :: reach the local host) and link-local targets
//! (127.0.0.0/8, ::1, 0.0.0.0, ::, 169.254.0.0/16, fe80::/10, `localhost`, `*.localhost`)
//! are matched only by a pattern that names them: an exact name, or an address or network
//! lying inside those ranges (`*`, `*.domain` or `0.0.0.0/0` never match them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A name, lowercased.
    Name(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    /// None: no port given (an `upstream {}` name, or the scheme's default port).
    pub port: Option<u16>,
}

impl Target {
    /// Reaches the local host or the link: needs a pattern that names it.
    pub fn is_special(&self) -> bool {
        match &self.host {
            Host::Ip(ip) => special_range(*ip).is_some(),
            Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
        }
    }
}

/// The prefix length of the loopback / unspecified / link-local range holding `ip`.
fn special_range(ip: IpAddr) -> Option<u8> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 127 {
                Some(8)
            } else if o[0] == 169 && o[1] == 254 {
                Some(16)
            } else if v4 == Ipv4Addr::UNSPECIFIED {
                Some(32)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6 == Ipv6Addr::LOCALHOST || v6 == Ipv6Addr::UNSPECIFIED {
                Some(128)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some(10)
            } else {
                None
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && !s.starts_with('+') => Ok(p),
        _ => Err(format!("invalid port \"{s}\"")),
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !n.starts_with('.')
        && !n.contains("..")
}

/// Splits `host[:port]`, `[v6][:port]` or a bare v6 literal (with an optional `/len` kept
/// in the host part when `allow_len`).
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(|| format!("unclosed \"[\" in \"{s}\""))?;
        let after = &rest[end + 1..];
        // `[v6]/len` keeps the length with the address.
        let (after_len, tail) = match after.find(':') {
            Some(i) => (&after[..i], Some(&after[i + 1..])),
            None => (after, None),
        };
        if !after_len.is_empty() && !after_len.starts_with('/') {
            return Err(format!("unexpected \"{after_len}\" after \"]\" in \"{s}\""));
        }
        // Return the address and its length as one slice of `s`.
        let host = &s[1..1 + end + 1 + after_len.len()];
        return Ok((host, tail));
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        1 => {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            Ok((h, Some(p)))
        }
        _ => Ok((s, None)), // a bare IPv6 literal
    }
}

/// Parses a call's upstream as the plugin gave it.
pub fn parse_target(upstream: &[u8]) -> Result<Target, String> {
    let s = std::str::from_utf8(upstream).map_err(|_| "the upstream is not ASCII".to_string())?;
    let (host, port) = split_host_port(s)?;
    let port = port.map(parse_port).transpose()?;
    let host = host.strip_suffix(']').unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target { host: Host::Ip(ip), port });
    }
    if host.contains(':') || host.contains('/') || host.contains(']') {
        return Err(format!("\"{s}\" is neither host:port nor an IP literal"));
    }
    // All digits and dots but not an address (e.g. 1.2.3.999): not a name either.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("invalid address \"{host}\""));
    }
    if !valid_name(host) {
        return Err(format!("invalid host name \"{host}\""));
    }
    Ok(Target { host: Host::Name(host.to_ascii_lowercase()), port })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPat {
    Any,
    Name(String),
    /// `*.example.com`: stored as ".example.com".
    Suffix(String),
    Net(IpAddr, u8),
}

/// One allow-list entry (`proxy_wasm_call_allow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    host: HostPat,
    port: Option<u16>,
}

/// Parses an allow-list pattern (see the module documentation).
pub fn parse_pattern(s: &str) -> Result<Pattern, String> {
    if s.is_empty() {
        return Err("empty pattern".into());
    }
    let (host, port) = split_host_port(s)?;
    let port = match port {
        None | Some("*") => None,
        Some(p) => Some(parse_port(p)?),
    };
    let host = if host == "*" {
        HostPat::Any
    } else if let Some(domain) = host.strip_prefix("*.") {
        if !valid_name(domain) {
            return Err(format!("invalid domain in \"{s}\""));
        }
        HostPat::Suffix(format!(".{}", domain.to_ascii_lowercase()))
    } else {
        let (addr, len) = match host.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (host, None),
        };
        let addr = addr.strip_suffix(']').unwrap_or(addr);
        match addr.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = canonical(ip);
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = match len {
                    None => max,
                    Some(l) => match l.parse::<u8>() {
                        Ok(n) if n <= max => n,
                        _ => return Err(format!("invalid prefix length \"/{l}\" in \"{s}\"")),
                    },
                };
                HostPat::Net(ip, len)
            }
            Err(_) if len.is_none() && valid_name(addr) && !addr.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                HostPat::Name(addr.to_ascii_lowercase())
            }
            Err(_) => return Err(format!("\"{s}\" is not a host, *.domain, IP address or network, with an optional :port")),
        }
    };
    Ok(Pattern { host, port })
}

fn in_net(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

impl Pattern {
    /// Whether this pattern lets a call reach `t`.
    pub fn matches(&self, t: &Target) -> bool {
        if self.port.is_some() && self.port != t.port {
            return false;
        }
        let special = t.is_special();
        match (&self.host, &t.host) {
            (HostPat::Any, _) => !special,
            (HostPat::Name(p), Host::Name(n)) => p == n,
            (HostPat::Suffix(sfx), Host::Name(n)) => !special && n.ends_with(sfx.as_str()),
            (HostPat::Net(net, len), Host::Ip(ip)) => {
                let ip = canonical(*ip);
                // A special target needs a network inside its special range.
                in_net(*net, *len, ip) && (!special || special_range(*net).is_some_and(|r| *len >= r))
            }
            _ => false,
        }
    }
}

/// Whether any of `patterns` lets a call reach `t`.
pub fn allowed(patterns: &[Pattern], t: &Target) -> bool {
    patterns.iter().any(|p| p.matches(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        parse_target(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn ok(pats: &[&str], target: &str) -> bool {
        let pats: Vec<Pattern> = pats.iter().map(|p| parse_pattern(p).unwrap_or_else(|e| panic!("{p}: {e}"))).collect();
        allowed(&pats, &t(target))
    }

    #[test]
    fn targets() {
        assert_eq!(t("backend"), Target { host: Host::Name("backend".into()), port: None });
        assert_eq!(t("Api.Example.com:8443"), Target { host: Host::Name("api.example.com".into()), port: Some(8443) });
        assert_eq!(t("10.1.2.3:80").host, Host::Ip("10.1.2.3".parse().unwrap()));
        assert_eq!(t("[::1]:8080"), Target { host: Host::Ip("::1".parse().unwrap()), port: Some(8080) });
        assert_eq!(t("[2001:db8::1]").port, None);
        assert_eq!(t("2001:db8::1").host, Host::Ip("2001:db8::1".parse().unwrap()));
        for bad in ["h:0", "h:65536", "h:x", "h:", ":80", "1.2.3.999", "a..b:1", "[::1", "[::1]x", "a b", "é:1", "h:+80"] {
            assert!(parse_target(bad.as_bytes()).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn special_targets() {
        for s in ["127.0.0.1:1", "127.9.9.9", "[::1]:80", "0.0.0.0:80", "[::]:80", "169.254.169.254:80", "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80", "localhost:80", "a.localhost:80"]
        {
            assert!(t(s).is_special(), "{s}");
            assert!(!ok(&["*", "*:80", "0.0.0.0/0", "[::]/0", "*.localhost"], s), "{s} needs an explicit pattern");
        }
        for s in ["10.0.0.1:80", "[2001:db8::1]:80", "example.com:80", "169.255.0.1:80"] {
            assert!(!t(s).is_special(), "{s}");
        }
    }

    #[test]
    fn matching() {
        assert!(ok(&["*"], "example.com:443"));
        assert!(ok(&["*:443"], "example.com:443"));
        assert!(!ok(&["*:443"], "example.com:80"));
        assert!(!ok(&["*:443"], "example.com"));
        assert!(ok(&["*.example.com"], "api.example.com:1"));
        assert!(!ok(&["*.example.com"], "example.com:1"));
        assert!(!ok(&["*.example.com"], "evilexample.com:1"));
        assert!(ok(&["api.example.com:8080"], "API.example.com:8080"));
        assert!(!ok(&["api.example.com:8080"], "api.example.com:8081"));
        assert!(ok(&["10.0.0.0/8"], "10.20.30.40:5"));
        assert!(!ok(&["10.0.0.0/8"], "11.0.0.1:5"));
        assert!(ok(&["127.0.0.1:1984"], "127.0.0.1:1984"));
        assert!(!ok(&["127.0.0.1:1984"], "127.0.0.1:1985"));
        assert!(ok(&["127.0.0.0/8"], "127.1.2.3:80"));
        assert!(!ok(&["127.0.0.0/7"], "127.1.2.3:80"));
        assert!(ok(&["[::1]"], "[::1]:80"));
        assert!(ok(&["[::1]:80"], "[::1]:80"));
        assert!(ok(&["127.0.0.1"], "[::ffff:127.0.0.1]:80"));
        assert!(ok(&["[fe80::]/10:80"], "[fe80::5]:80"));
        assert!(ok(&["169.254.169.254"], "169.254.169.254:80"));
        assert!(ok(&["localhost"], "localhost:8080"));
        assert!(!ok(&["localhost:1"], "localhost:8080"));
        assert!(!ok(&["10.0.0.1"], "example.com:80"));
        assert!(!ok(&[], "example.com:80"));
    }

    #[test]
    fn bad_patterns() {
        for bad in ["", "*.", "*.a..b", "10.0.0.0/33", "[::1]/129", "a:0", "a:b", "a/8", "1.2.3.4/x", "[::1", "a b"] {
            assert!(parse_pattern(bad).is_err(), "{bad} should be refused");
        }
    }
}
