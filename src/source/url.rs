//! Source URLs: which transport, which host and port (for the known_hosts check), the
//! form that may appear in errors and logs (never with a password).

/// The transport a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    Ssh,
    Git,
    File,
}

/// A parsed source URL. `redacted` is safe to print; the original text is only handed to
/// libgit2.
#[derive(Debug, Clone)]
pub struct SourceUrl {
    pub scheme: Scheme,
    /// Host name or address, without brackets; empty for file://.
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The user named in the URL (`ssh://git@host/...`, `git@host:path`).
    pub user: Option<String>,
    /// A password embedded in the URL, kept only so that it can be scrubbed from messages.
    pub(crate) embedded_password: Option<String>,
    /// The URL with any password replaced by `***`.
    pub redacted: String,
}

impl SourceUrl {
    /// Parses `scheme://[user[:password]@]host[:port]/path`, the scp-like
    /// `user@host:path`, and `file://` URLs. Anything else is rejected.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("the URL is empty".into());
        }
        if url.chars().any(|c| c.is_control()) {
            return Err("the URL contains control characters".into());
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            let scheme_kind = match scheme.to_ascii_lowercase().as_str() {
                "https" => Scheme::Https,
                "http" => Scheme::Http,
                "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
                "git" => Scheme::Git,
                "file" => Scheme::File,
                // The scheme is echoed only when it is a plain word: text before
                // "://" may be a mistyped `user:password@host`.
                other
                    if other
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
                {
                    return Err(format!("unsupported URL scheme {other:?}"));
                }
                _ => return Err("unsupported or malformed URL scheme".into()),
            };
            if scheme_kind == Scheme::File {
                return Ok(SourceUrl {
                    scheme: Scheme::File,
                    host: String::new(),
                    port: None,
                    user: None,
                    embedded_password: None,
                    redacted: url.to_owned(),
                });
            }
            // The user information ends at the last '@'; anything in it that RFC 3986
            // does not allow unencoded ('/', '@', '?', '#', ...) makes the URL
            // ambiguous, and a transport could read part of a password as the host or
            // path and show it. Such URLs are refused without echoing any of it.
            let (userinfo, after) = match rest.rfind('@') {
                Some(i) if !is_host_then_plain_path(&rest[..i]) => {
                    (Some(&rest[..i]), &rest[i + 1..])
                }
                _ => (None, rest),
            };
            if let Some(ui) = userinfo
                && !ui
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:%".contains(c))
            {
                return Err("the user name or password in the URL contains characters that must be percent-encoded ('/' as %2F, '@' as %40, '?' as %3F, '#' as %23, ...)".into());
            }
            if let Some(ui) = userinfo
                && !percent_encoding_is_valid(ui)
            {
                return Err(
                    "the user name or password in the URL contains a '%' that is not followed by two hex digits"
                        .into(),
                );
            }
            let (hostport, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            let (user, password) = match userinfo {
                Some(ui) => match ui.split_once(':') {
                    Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                    None => (Some(ui.to_owned()), None),
                },
                None => (None, None),
            };
            let (host, port) = split_host_port(hostport)?;
            if host.is_empty() {
                return Err("the URL names no host".into());
            }
            let mut redacted = format!("{scheme}://");
            if let Some(u) = &user {
                redacted.push_str(u);
                if password.is_some() {
                    redacted.push_str(":***");
                }
                redacted.push('@');
            }
            redacted.push_str(hostport);
            redacted.push_str(path);
            return Ok(SourceUrl {
                scheme: scheme_kind,
                host,
                port,
                user: user.filter(|u| !u.is_empty()),
                embedded_password: password.filter(|p| !p.is_empty()),
                redacted,
            });
        }
        // scp-like syntax: [user@]host:path (no slash before the colon).
        if let Some(colon) = url.find(':') {
            let before = &url[..colon];
            if !before.contains('/') && !before.is_empty() {
                let (user, host) = match before.rfind('@') {
                    Some(i) => (Some(before[..i].to_owned()), before[i + 1..].to_owned()),
                    None => (None, before.to_owned()),
                };
                if host.is_empty() {
                    return Err("the URL names no host".into());
                }
                return Ok(SourceUrl {
                    scheme: Scheme::Ssh,
                    host,
                    port: None,
                    user: user.filter(|u| !u.is_empty()),
                    embedded_password: None,
                    redacted: url.to_owned(),
                });
            }
        }
        Err(
            "not a URL (expected https://, http://, ssh://, git://, file:// or user@host:path)"
                .into(),
        )
    }

    /// The known_hosts name of this host: `host`, or `[host]:port` for a port other
    /// than 22.
    pub fn known_hosts_name(&self) -> String {
        match self.port {
            Some(p) if p != 22 => format!("[{}]:{p}", self.host),
            _ => self.host.clone(),
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err("unbalanced '[' in the host".into());
        };
        let host = rest[..end].to_owned();
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => Some(parse_port(p)?),
            _ => None,
        };
        return Ok((host, port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => Ok((h.to_owned(), Some(parse_port(p)?))),
        Some((h, _)) => Ok((h.to_owned(), None)),
        None => Ok((hostport.to_owned(), None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    // Not echoed: with a malformed URL this could be part of a password.
    p.parse::<u16>()
        .map_err(|_| "invalid port in the URL".to_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// True when `s` (the text before the last '@') is `host[:port]/path` with no ':' in the
/// path, i.e. the '@' belongs to the path, not to user information.
fn is_host_then_plain_path(s: &str) -> bool {
    let Some(slash) = s.find('/') else {
        return false;
    };
    let (authority, path) = s.split_at(slash);
    if path.contains(':') || authority.is_empty() {
        return false;
    }
    if authority.starts_with('[') {
        return split_host_port(authority).is_ok();
    }
    match authority.split_once(':') {
        None => true,
        Some((h, p)) => !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()),
    }
}

fn percent_encoding_is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// `s` with `%XX` sequences decoded (lossily), for scrubbing the form a transport shows.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_value(b[i + 1]), hex_value(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_keeps_the_rest() {
        let u = SourceUrl::parse("https://bob:hunter2@example.com:8443/org/repo.git").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(8443));
        assert_eq!(u.redacted, "https://bob:***@example.com:8443/org/repo.git");
        assert!(!u.redacted.contains("hunter2"));
        let plain = SourceUrl::parse("https://example.com:8443/org/repo.git").unwrap();
        assert_ne!(plain.redacted, u.redacted);
    }

    #[test]
    fn unencoded_characters_in_a_password_are_refused_without_echo() {
        for url in [
            "https://alice:canary/pw@example.com/repo.git",
            "https://alice:canary@pw@example.com/repo.git",
            "https://alice:canary?pw@example.com/repo.git",
            "https://alice:canary#pw@example.com/repo.git",
            "https://al/ice:canary@example.com/repo.git",
            "https://alice:canary%zz@example.com/repo.git",
            "alice:canary@example.com://x",
        ] {
            let e = SourceUrl::parse(url).unwrap_err();
            assert!(!e.contains("canary"), "{url}: {e}");
        }
        let ok = SourceUrl::parse("https://alice:canary%2Fpw%40x@example.com/repo.git").unwrap();
        assert_eq!(ok.host, "example.com");
        assert_eq!(ok.redacted, "https://alice:***@example.com/repo.git");
        assert_eq!(percent_decode("canary%2Fpw%40x"), "canary/pw@x");
        // An '@' in the path after a host and port is still a path.
        let p = SourceUrl::parse("https://example.com:8443/org/repo@v1").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.user.as_deref()),
            ("example.com", Some(8443), None)
        );
    }

    #[test]
    fn ssh_forms() {
        let u = SourceUrl::parse("ssh://git@[::1]:2222/r.git").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.known_hosts_name(), "[::1]:2222");
        let scp = SourceUrl::parse("git@github.com:org/repo.git").unwrap();
        assert_eq!(scp.scheme, Scheme::Ssh);
        assert_eq!(scp.user.as_deref(), Some("git"));
        assert_eq!(scp.known_hosts_name(), "github.com");
        assert!(SourceUrl::parse("ftp://x/y").is_err());
        assert!(SourceUrl::parse("").is_err());
    }
}
