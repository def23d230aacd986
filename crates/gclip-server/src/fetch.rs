//! Image URLs, fetched only with `--allow-url`: http(s), a byte limit, one time limit for the
//! whole fetch (redirects and body included), a few redirects, and every hop's host resolved
//! and refused unless each of its addresses is a public (globally routable) one.
//!
//! The check is made inside the HTTP client's resolver, so the client connects to exactly the
//! addresses that were checked: a host cannot answer a public address to the check and a
//! private one to the connection (DNS rebinding).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How image URLs are fetched.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    /// Total time for one URL: connections, redirects and the body (`--url-timeout-ms`).
    pub timeout: Duration,
    /// Redirects followed at most (`--max-url-redirects`).
    pub max_redirects: u32,
    /// TESTING ONLY: loopback addresses on these ports are allowed, so that tests can serve
    /// images from 127.0.0.1. Empty (the default, and always in production): every
    /// non-public address is refused.
    pub test_loopback_ports: Vec<u16>,
}

impl Default for UrlPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_redirects: 3,
            test_loopback_ports: Vec::new(),
        }
    }
}

impl UrlPolicy {
    /// Why `addr` may not be connected to, or None when it may.
    fn refusal(&self, addr: &SocketAddr) -> Option<&'static str> {
        let class = address_class(addr.ip())?;
        let test_ok = class == "loopback" && self.test_loopback_ports.contains(&addr.port());
        (!test_ok).then_some(class)
    }
}

/// What kind of non-public address `ip` is, or None for a public (global unicast) one.
pub fn address_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let class = if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || a >= 240 {
        "reserved"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (carrier-grade NAT)"
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) {
        "reserved"
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        "documentation"
    } else {
        return None;
    };
    Some(class)
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        // NAT64: the IPv4 address in the last 32 bits.
        return v4_class(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address in bits 16..48.
        return v4_class(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    let class = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_multicast() {
        "multicast"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique-local"
    } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
        "link-local"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        // IETF protocol assignments (Teredo, benchmarking, ORCHID, ...).
        "reserved"
    } else if s[0] & 0xe000 != 0x2000 {
        // Only 2000::/3 is allocated global unicast; the rest (IPv4-compatible, discard, ...)
        // is not.
        "reserved"
    } else {
        return None;
    };
    Some(class)
}

/// A refusal by the resolver, recognised again in the client's error.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Resolves a host and hands the client only checked addresses (all of them, or none).
struct CheckedResolver {
    policy: Arc<UrlPolicy>,
}

std::thread_local! {
    /// The deadline of the fetch running on this thread: the client calls the resolver on
    /// the thread that made the request, so the lookup gets what is left of the time limit.
    static DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

impl ureq::Resolver for CheckedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let left = DEADLINE.get().map_or(self.policy.timeout, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let addrs = lookup(netloc, left)?;
        if addrs.is_empty() {
            return Err(std::io::Error::other(Refused(format!(
                "{netloc} has no address"
            ))));
        }
        // One non-public address refuses the host: a name that mixes public and private
        // answers is not one to trust with the public ones either.
        for a in &addrs {
            if let Some(class) = self.policy.refusal(a) {
                let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    Refused(format!(
                        "host {host} resolves to {}, a {class} address; only public addresses \
                         are fetched",
                        a.ip()
                    )),
                ));
            }
        }
        Ok(addrs)
    }
}

/// The system resolver, bounded in time (it has no timeout of its own). A lookup that runs
/// over is abandoned on its thread, which ends when the system gives up.
fn lookup(netloc: &str, timeout: Duration) -> std::io::Result<Vec<SocketAddr>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let n = netloc.to_string();
    std::thread::Builder::new()
        .name("gclip-url-dns".into())
        .spawn(move || {
            let r = n.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
            let _ = tx.send(r);
        })?;
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("resolving {netloc} timed out"),
        ))
    })
}

/// Fetches image URLs under a [`UrlPolicy`].
pub struct UrlFetcher {
    agent: ureq::Agent,
    policy: Arc<UrlPolicy>,
    max_bytes: u64,
}

impl std::fmt::Debug for UrlFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlFetcher")
            .field("policy", &self.policy)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl UrlFetcher {
    /// `max_bytes`: the largest body (the server's image byte limit, `--max-image-bytes`).
    pub fn new(policy: UrlPolicy, max_bytes: u64) -> Self {
        let policy = Arc::new(policy);
        let agent = ureq::AgentBuilder::new()
            .resolver(CheckedResolver {
                policy: policy.clone(),
            })
            // Redirects are followed here, one hop at a time, so each target's scheme is
            // checked and the count and messages are ours; every hop's host still goes
            // through the checked resolver.
            .redirects(0)
            .try_proxy_from_env(false)
            .user_agent(concat!("gclip-serve/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent,
            policy,
            max_bytes,
        }
    }

    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// The body of `url` (following redirects), or why not. Never panics on what a remote
    /// server sends.
    pub fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let p = &self.policy;
        let deadline = Instant::now() + p.timeout;
        DEADLINE.set(Some(deadline));
        let r = self.fetch_until(url, deadline);
        DEADLINE.set(None);
        r
    }

    fn fetch_until(&self, url: &str, deadline: Instant) -> Result<Vec<u8>, String> {
        let p = &self.policy;
        let mut current = parse_http_url(url).map_err(|e| format!("image URL {url}: {e}"))?;
        let mut hops = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out(url));
            }
            let resp = match self.agent.get(current.as_str()).timeout(left).call() {
                Ok(r) => r,
                Err(ureq::Error::Status(code, _)) => {
                    return Err(format!("image URL {url}: the server answered HTTP {code}"))
                }
                Err(ureq::Error::Transport(t)) => return Err(self.transport_error(url, &t)),
            };
            let status = resp.status();
            if (300..400).contains(&status) {
                let Some(loc) = resp.header("location") else {
                    return Err(format!(
                        "image URL {url}: HTTP {status} redirect without a Location"
                    ));
                };
                hops += 1;
                if hops > p.max_redirects {
                    return Err(format!(
                        "image URL {url}: more than {} redirects (--max-url-redirects)",
                        p.max_redirects
                    ));
                }
                let next = current
                    .join(loc)
                    .map_err(|e| format!("image URL {url}: bad redirect target {loc:?}: {e}"))?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(format!(
                        "image URL {url}: redirect to a {} URL refused (http and https only)",
                        next.scheme()
                    ));
                }
                current = next;
                continue;
            }
            if status != 200 {
                return Err(format!(
                    "image URL {url}: the server answered HTTP {status}"
                ));
            }
            let ctype = resp.content_type().to_ascii_lowercase();
            if ctype.starts_with("text/") || ctype.contains("json") || ctype.contains("xml") {
                // SVG is XML: it is no raster image either.
                return Err(format!(
                    "image URL {url} is not an image: the server sent {ctype}"
                ));
            }
            let over = || {
                format!(
                    "image URL {url}: over the limit of {} bytes (--max-image-bytes)",
                    self.max_bytes
                )
            };
            if let Some(n) = resp
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                if n > self.max_bytes {
                    return Err(over());
                }
            }
            let mut body = Vec::new();
            resp.into_reader()
                .take(self.max_bytes + 1)
                .read_to_end(&mut body)
                .map_err(|e| {
                    if is_timeout(&e) {
                        self.timed_out(url)
                    } else {
                        format!("image URL {url}: reading the body failed: {e}")
                    }
                })?;
            if body.len() as u64 > self.max_bytes {
                return Err(over());
            }
            return Ok(body);
        }
    }

    fn timed_out(&self, url: &str) -> String {
        format!(
            "image URL {url}: not fetched within {} ms (--url-timeout-ms)",
            self.policy.timeout.as_millis()
        )
    }

    fn transport_error(&self, url: &str, t: &ureq::Transport) -> String {
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
        while let Some(e) = src {
            if let Some(r) = e.downcast_ref::<Refused>() {
                return format!("image URL {url} refused: {r}");
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<Refused>()) {
                    return format!("image URL {url} refused: {r}");
                }
                if is_timeout(io) {
                    return self.timed_out(url);
                }
            }
            src = e.source();
        }
        format!("image URL {url}: {t}")
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn parse_http_url(u: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{} URLs are not fetched (http and https only)",
            parsed.scheme()
        ));
    }
    if parsed.host().is_none() {
        return Err("the URL has no host".into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<&'static str> {
        address_class(s.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_classified() {
        for (ip, want) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("192.0.2.5", "documentation"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:c0a8:0101::1", "private"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "reserved"),
            ("::7f00:1", "reserved"),
        ] {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn test_ports_allow_only_loopback_on_those_ports() {
        let p = UrlPolicy {
            test_loopback_ports: vec![4000],
            ..UrlPolicy::default()
        };
        assert_eq!(p.refusal(&"127.0.0.1:4000".parse().unwrap()), None);
        assert_eq!(p.refusal(&"[::1]:4000".parse().unwrap()), None);
        assert_eq!(
            p.refusal(&"127.0.0.1:4001".parse().unwrap()),
            Some("loopback")
        );
        assert_eq!(
            p.refusal(&"10.0.0.1:4000".parse().unwrap()),
            Some("private")
        );
        assert_eq!(
            UrlPolicy::default().refusal(&"127.0.0.1:4000".parse().unwrap()),
            Some("loopback")
        );
    }

    #[test]
    fn only_http_urls_with_a_host_are_fetched() {
        assert!(parse_http_url("file:///etc/passwd")
            .unwrap_err()
            .contains("http and https only"));
        assert!(parse_http_url("ftp://example.com/x.png").is_err());
        assert!(parse_http_url("not a url").is_err());
        assert!(parse_http_url("https://example.com/x.png").is_ok());
    }
}
