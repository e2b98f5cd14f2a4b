//! Outbound destination policy (SSRF guard): every upstream connection — provider calls, custom
//! provider `api_base`, the control plane's connectivity tests — is checked against it after DNS
//! resolution, and the connection goes to the checked address (no second lookup to rebind).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// What kind of address a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    Public,
    Loopback,
    /// RFC 1918, CGNAT (100.64/10), IPv6 unique-local (fc00::/7).
    Private,
    LinkLocal,
    /// Cloud instance-metadata endpoints (AWS/GCP/Azure/Alibaba/OCI).
    Metadata,
    /// 0.0.0.0, ::, multicast, broadcast, reserved: never a sensible upstream.
    Unroutable,
}

impl AddrClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Public => "public",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link-local",
            AddrClass::Metadata => "cloud metadata",
            AddrClass::Unroutable => "unroutable",
        }
    }
}

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("invalid IP address in {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped and IPv4-compatible IPv6 addresses are judged as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                // Deprecated IPv4-compatible form ::a.b.c.d (but not :: and ::1).
                if s[..6].iter().all(|x| *x == 0) && (s[6] != 0 || s[7] > 1) {
                    IpAddr::V4(Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    ))
                } else {
                    ip
                }
            }
        },
        v4 => v4,
    }
}

pub fn classify(ip: IpAddr) -> AddrClass {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254)
        || ip == Ipv4Addr::new(100, 100, 100, 200)
        || ip == Ipv4Addr::new(192, 0, 0, 192)
    {
        return AddrClass::Metadata;
    }
    if ip.is_loopback() {
        AddrClass::Loopback
    } else if ip.is_link_local() {
        AddrClass::LinkLocal
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        AddrClass::Private
    } else if ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || o[0] >= 240
    {
        AddrClass::Unroutable
    } else {
        AddrClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return AddrClass::Metadata;
    }
    if ip.is_loopback() {
        AddrClass::Loopback
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddrClass::LinkLocal
    } else if (s[0] & 0xfe00) == 0xfc00 {
        AddrClass::Private
    } else if ip.is_unspecified() || ip.is_multicast() {
        AddrClass::Unroutable
    } else {
        AddrClass::Public
    }
}

/// Which destinations may be reached.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    /// Loopback and private networks allowed (standalone's default: one machine, local models).
    pub allow_private: bool,
    /// Networks allowed whatever their class (the operator allow-list), e.g. `10.2.0.0/16`,
    /// `127.0.0.1/32`, or `169.254.169.254/32` for someone who really means it.
    pub allow_cidrs: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination {ip} is a {} address, which upstream calls may not reach (allow it with AIPROXY_UPSTREAM_ALLOW_CIDRS)", class.as_str())]
pub struct Blocked {
    pub ip: IpAddr,
    pub class: AddrClass,
}

impl NetPolicy {
    /// Everything allowed: only for tests of other behaviour.
    pub fn allow_all() -> NetPolicy {
        NetPolicy {
            allow_private: true,
            allow_cidrs: vec![
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix: 0,
                },
                Cidr {
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    prefix: 0,
                },
            ],
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow_cidrs.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        let class = classify(ip);
        let ok = match class {
            AddrClass::Public => true,
            AddrClass::Loopback | AddrClass::Private => self.allow_private,
            AddrClass::LinkLocal | AddrClass::Metadata | AddrClass::Unroutable => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Blocked {
                ip: canonical(ip),
                class,
            })
        }
    }

    /// Hostnames that are metadata endpoints whatever they resolve to.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        if matches!(
            h.as_str(),
            "metadata.google.internal"
                | "metadata"
                | "metadata.azure.internal"
                | "instance-data"
                | "instance-data.ec2.internal"
        ) {
            return Err(format!(
                "destination {host} is a cloud metadata endpoint, which upstream calls may not reach"
            ));
        }
        Ok(())
    }
}

/// A DNS resolver for hyper's connector that drops every address the policy forbids, so the
/// connection can only go to an address that was checked.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<NetPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<NetPolicy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(String);

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            policy.check_host(&host).map_err(ResolveError)?;
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| ResolveError(format!("cannot resolve {host}: {e}")))?
                .collect();
            let mut first_block = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(b) => {
                        first_block.get_or_insert(b);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), first_block) {
                (false, _) => Ok(allowed.into_iter()),
                (true, Some(b)) => Err(ResolveError(format!("{host}: {b}"))),
                (true, None) => Err(ResolveError(format!("{host} has no addresses"))),
            }
        })
    }
}

/// Checks a URL's host before connecting: IP literals (which bypass the resolver) are judged
/// here, names are judged by `GuardedResolver` at connect time.
pub fn check_uri_host(policy: &NetPolicy, uri: &http::Uri) -> Result<(), String> {
    let host = uri.host().ok_or_else(|| "URL has no host".to_string())?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return policy.check(ip).map_err(|b| b.to_string());
    }
    policy.check_host(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(classify(ip("8.8.8.8")), AddrClass::Public);
        assert_eq!(classify(ip("127.0.0.1")), AddrClass::Loopback);
        assert_eq!(classify(ip("10.1.2.3")), AddrClass::Private);
        assert_eq!(classify(ip("172.16.0.1")), AddrClass::Private);
        assert_eq!(classify(ip("192.168.1.1")), AddrClass::Private);
        assert_eq!(classify(ip("100.64.0.1")), AddrClass::Private);
        assert_eq!(classify(ip("169.254.169.254")), AddrClass::Metadata);
        assert_eq!(classify(ip("169.254.1.1")), AddrClass::LinkLocal);
        assert_eq!(classify(ip("0.0.0.0")), AddrClass::Unroutable);
        assert_eq!(classify(ip("::1")), AddrClass::Loopback);
        assert_eq!(classify(ip("fe80::1")), AddrClass::LinkLocal);
        assert_eq!(classify(ip("fd00:ec2::254")), AddrClass::Metadata);
        assert_eq!(classify(ip("fc00::1")), AddrClass::Private);
        assert_eq!(classify(ip("2606:4700::1111")), AddrClass::Public);
        // IPv4-mapped and IPv4-compatible IPv6 are judged as IPv4.
        assert_eq!(classify(ip("::ffff:169.254.169.254")), AddrClass::Metadata);
        assert_eq!(classify(ip("::ffff:127.0.0.1")), AddrClass::Loopback);
        assert_eq!(classify(ip("::10.0.0.1")), AddrClass::Private);
    }

    #[test]
    fn policy_defaults_and_allow_list() {
        let strict = NetPolicy::default();
        assert!(strict.check(ip("8.8.8.8")).is_ok());
        assert!(strict.check(ip("127.0.0.1")).is_err());
        assert!(strict.check(ip("10.0.0.1")).is_err());
        let local = NetPolicy {
            allow_private: true,
            allow_cidrs: vec![],
        };
        assert!(local.check(ip("127.0.0.1")).is_ok());
        assert!(
            local.check(ip("169.254.169.254")).is_err(),
            "metadata stays blocked even with private allowed"
        );
        assert!(local.check(ip("fe80::1")).is_err());
        let listed = NetPolicy {
            allow_private: false,
            allow_cidrs: vec![
                "169.254.169.254/32".parse().unwrap(),
                "10.2.0.0/16".parse().unwrap(),
            ],
        };
        assert!(listed.check(ip("169.254.169.254")).is_ok());
        assert!(listed.check(ip("10.2.9.9")).is_ok());
        assert!(listed.check(ip("10.3.0.1")).is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let c: Cidr = "::ffff:0:0/96".parse().unwrap();
        assert!(c.contains(ip("::ffff:1.2.3.4")) || !c.contains(ip("1.2.3.4")));
    }

    #[test]
    fn uri_literals_are_checked() {
        let p = NetPolicy::default();
        assert!(check_uri_host(&p, &"http://169.254.169.254/latest".parse().unwrap()).is_err());
        assert!(check_uri_host(&p, &"http://[::ffff:a9fe:a9fe]/".parse().unwrap()).is_err());
        assert!(check_uri_host(&p, &"http://metadata.google.internal/".parse().unwrap()).is_err());
        assert!(check_uri_host(&p, &"https://api.openai.com/v1".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn resolver_drops_forbidden_addresses_for_numeric_forms() {
        use tower::Service;
        let mut r = GuardedResolver::new(Arc::new(NetPolicy::default()));
        // Decimal and octal IPv4 forms resolve (via the system resolver) to loopback.
        for host in ["2130706433", "0177.0.0.1", "localhost"] {
            let name: Name = host.parse().unwrap();
            let res = r.call(name).await;
            assert!(res.is_err(), "{host} should be refused");
        }
    }
}
