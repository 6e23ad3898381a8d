//! Who is in front of the server: the `--trusted-proxy` ranges, and what a request's
//! connection and forwarding headers say about its client — address, scheme and host.
//!
//! **The one place that decides whether a peer is a trusted proxy** ([`is_trusted_proxy`]):
//! the client's address for rate limits and audit, the scheme and host of URLs the server
//! makes (the device flow), and the SSO header of the web UI all ask it. `X-Forwarded-For`,
//! `-Proto` and `-Host` count only when the connection's socket peer is a trusted proxy; a
//! client's own copies of them are ignored. [`Peer`] is computed once per request (in
//! `app::observe`) and put in the request's extensions.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// A reverse proxy's address or range: `10.0.0.7`, `10.0.0.0/24`, `2001:db8::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(TrustedProxy(IpNet::from(ip.to_canonical())));
        }
        s.parse::<IpNet>()
            .map(|n| TrustedProxy(n.trunc()))
            .map_err(|_| format!("{s:?} is not an IP address or a CIDR range (e.g. 10.0.0.0/24)"))
    }
}

impl std::fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether `ip` (a socket peer, or a hop of `X-Forwarded-For`) is one of the trusted proxies.
pub fn is_trusted_proxy(trusted: &[TrustedProxy], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|t| t.0.contains(&ip))
}

/// Marks a request that came over the server's own TLS (put in its extensions by `serve`).
#[derive(Debug, Clone, Copy)]
pub struct TlsConnection;

/// The client of a request as the server sees it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address: the socket peer; behind a trusted proxy, the right-most address
    /// of `X-Forwarded-For` that is not itself a trusted proxy. Empty when unknown.
    pub address: String,
    /// The socket peer is a trusted proxy (so its headers, e.g. an SSO user header, count).
    pub via_proxy: bool,
    /// `https` when the connection is TLS or a trusted proxy says `X-Forwarded-Proto: https`.
    pub scheme: &'static str,
    /// The host the client asked for: a trusted proxy's `X-Forwarded-Host`, else `Host`;
    /// only a plain `host[:port]` (never anything that could change a URL's meaning).
    pub host: Option<String>,
}

impl Peer {
    /// What the connection (`socket`, `tls`) and, behind a trusted proxy, the forwarding
    /// headers say.
    pub fn of(
        socket: Option<SocketAddr>,
        tls: bool,
        headers: &HeaderMap,
        trusted: &[TrustedProxy],
    ) -> Peer {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let via_proxy = socket.is_some_and(|s| is_trusted_proxy(trusted, s.ip()));
        let address = peer_address(socket, header("x-forwarded-for"), trusted);
        let forwarded = |name: &str| {
            via_proxy
                .then(|| header(name))
                .flatten()
                // A proxy chain appends: the first value is what the client asked the first proxy.
                .and_then(|v| v.split(',').next())
                .map(str::trim)
        };
        let scheme = match forwarded("x-forwarded-proto") {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            Some(p) if p.eq_ignore_ascii_case("http") => "http",
            _ if tls => "https",
            _ => "http",
        };
        let host = forwarded("x-forwarded-host")
            .or_else(|| header("host"))
            .filter(|h| plain_host(h))
            .map(str::to_string);
        Peer {
            address,
            via_proxy,
            scheme,
            host,
        }
    }

    /// `scheme://host`, or with `fallback` as the host when the request named none.
    pub fn base_url(&self, fallback: &str) -> String {
        format!(
            "{}://{}",
            self.scheme,
            self.host.as_deref().unwrap_or(fallback)
        )
    }
}

/// A host name or address with an optional port, nothing else.
fn plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// The client's address (see [`Peer::address`]).
fn peer_address(
    socket: Option<SocketAddr>,
    forwarded_for: Option<&str>,
    trusted: &[TrustedProxy],
) -> String {
    let Some(socket) = socket else {
        return String::new();
    };
    let ip = socket.ip().to_canonical();
    if !is_trusted_proxy(trusted, ip) {
        return ip.to_string();
    }
    let mut peer = ip;
    if let Some(ff) = forwarded_for {
        for hop in ff.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(a) => {
                    peer = a.to_canonical();
                    if !is_trusted_proxy(trusted, peer) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    peer.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn sock(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 5000))
    }

    #[test]
    fn the_peer_is_the_socket_unless_a_trusted_proxy_forwards() {
        let proxy = proxies(&["10.0.0.1"]);
        assert_eq!(
            peer_address(sock("192.0.2.7"), Some("1.2.3.4"), &proxy),
            "192.0.2.7"
        );
        assert_eq!(
            peer_address(sock("10.0.0.1"), Some("1.2.3.4"), &proxy),
            "1.2.3.4"
        );
        assert_eq!(
            peer_address(sock("10.0.0.1"), Some("6.6.6.6, 1.2.3.4, 10.0.0.1"), &proxy),
            "1.2.3.4",
            "the client cannot choose its address by sending X-Forwarded-For itself"
        );
        assert_eq!(peer_address(sock("10.0.0.1"), None, &proxy), "10.0.0.1");
        assert_eq!(
            peer_address(sock("10.0.0.1"), Some("junk"), &proxy),
            "10.0.0.1"
        );
        assert_eq!(
            peer_address(sock("::ffff:192.0.2.7"), None, &[]),
            "192.0.2.7"
        );
        assert_eq!(peer_address(None, None, &[]), "");
    }

    #[test]
    fn ranges_and_mapped_addresses_are_trusted_alike() {
        let t = proxies(&["10.1.0.0/16", "2001:db8::/64", "192.0.2.9"]);
        assert!(is_trusted_proxy(&t, "10.1.200.3".parse().unwrap()));
        assert!(!is_trusted_proxy(&t, "10.2.0.1".parse().unwrap()));
        assert!(is_trusted_proxy(&t, "::ffff:10.1.0.1".parse().unwrap()));
        assert!(is_trusted_proxy(&t, "2001:db8::5".parse().unwrap()));
        assert!(is_trusted_proxy(&t, "192.0.2.9".parse().unwrap()));
        assert!(!is_trusted_proxy(&t, "192.0.2.10".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<TrustedProxy>().is_err());
        assert!("proxy.example.org".parse::<TrustedProxy>().is_err());
        // Host bits are dropped: 10.1.2.3/16 is 10.1.0.0/16.
        assert_eq!(
            "10.1.2.3/16".parse::<TrustedProxy>().unwrap().to_string(),
            "10.1.0.0/16"
        );
    }

    #[test]
    fn forwarded_scheme_and_host_count_only_from_a_trusted_proxy() {
        let t = proxies(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.insert("host", "internal:8080".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "hpc.example.org".parse().unwrap());
        h.insert("x-forwarded-for", "198.51.100.4".parse().unwrap());
        let behind = Peer::of(sock("10.0.0.2"), false, &h, &t);
        assert_eq!(behind.base_url("x"), "https://hpc.example.org");
        assert_eq!(behind.address, "198.51.100.4");
        assert!(behind.via_proxy);
        let direct = Peer::of(sock("203.0.113.5"), false, &h, &t);
        assert_eq!(direct.base_url("x"), "http://internal:8080");
        assert_eq!(direct.address, "203.0.113.5");
        assert!(!direct.via_proxy);
        let tls = Peer::of(sock("203.0.113.5"), true, &h, &t);
        assert_eq!(tls.scheme, "https");
        h.insert("x-forwarded-host", "evil.example/path?".parse().unwrap());
        let odd = Peer::of(sock("10.0.0.2"), false, &h, &t);
        assert_eq!(odd.host, None, "a host with a path is not a host");
        assert_eq!(
            Peer::of(None, false, &HeaderMap::new(), &t).base_url("127.0.0.1:1"),
            "http://127.0.0.1:1"
        );
    }
}
