//! Source URLs: which transport, which host and port (for the known_hosts check), the
//! form that may appear in errors and logs (never with a password), and the cache key.

use ring::digest;

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
                other => return Err(format!("unsupported URL scheme {other:?}")),
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
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (userinfo, hostport) = match authority.rfind('@') {
                Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
                None => (None, authority),
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

    /// The name of the cache directory for this URL: a hash of the URL without any
    /// password, so that rotating a password keeps the cache.
    pub fn cache_key(&self) -> String {
        let d = digest::digest(&digest::SHA256, self.redacted.as_bytes());
        d.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
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
    p.parse::<u16>()
        .map_err(|_| format!("invalid port {p:?} in the URL"))
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
