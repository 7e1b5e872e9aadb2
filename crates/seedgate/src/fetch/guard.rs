//! The outbound guard: which addresses the gateway may connect to when it fetches a URL it was
//! given (media inputs, upstream results, webhooks). Loopback, private, link-local, CGNAT,
//! multicast, reserved and cloud-metadata addresses are refused unless allow-listed, both for IP
//! literals and for every address a name resolves to, and again on every redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Addresses this process must not reach on a caller's behalf, with the operator's exceptions.
#[derive(Clone, Debug)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
    /// False: only the allow-listed networks, nothing on the public internet.
    public_internet: bool,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        Self::new(Vec::new(), true)
    }
}

/// Raised when a URL leads only to refused addresses; callers look for it in error chains.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a permitted destination (private, loopback or reserved address)")]
pub struct Forbidden(pub String);

fn v4_forbidden(a: Ipv4Addr) -> bool {
    let [first, second, ..] = a.octets();
    a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_unspecified()
        || a.is_documentation()
        || first == 0
        || first >= 240
        // 100.64.0.0/10, carrier-grade NAT.
        || (first == 100 && (64..128).contains(&second))
        // 192.0.0.0/24, IETF protocol assignments.
        || (first == 192 && second == 0 && a.octets()[2] == 0)
}

fn v6_forbidden(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_forbidden(v4);
    }
    let first = a.segments()[0];
    a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        // fc00::/7 unique local (this includes the EC2 metadata address fd00:ec2::254).
        || (first & 0xfe00) == 0xfc00
        // fe80::/10 link-local.
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32 documentation.
        || (first == 0x2001 && a.segments()[1] == 0x0db8)
}

impl AddressPolicy {
    pub fn new(allow: Vec<IpNet>, public_internet: bool) -> Self {
        Self {
            allow,
            public_internet,
        }
    }

    /// Whether a connection to `ip` is permitted.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if !self.public_internet {
            return false;
        }
        match ip {
            IpAddr::V4(a) => !v4_forbidden(a),
            IpAddr::V6(a) => !v6_forbidden(a),
        }
    }

    /// Checks a URL's host when it is an IP literal (names are checked when resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Forbidden> {
        let host = url.host_str().unwrap_or("");
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        match literal {
            Ok(ip) if !self.permits(ip) => Err(Forbidden(ip.to_string())),
            _ => Ok(()),
        }
    }

    /// Keeps the permitted addresses of a resolution; refuses when none is left.
    pub fn filter(
        &self,
        name: &str,
        addrs: impl Iterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Forbidden> {
        let permitted: Vec<SocketAddr> = addrs.filter(|a| self.permits(a.ip())).collect();
        if permitted.is_empty() {
            Err(Forbidden(name.to_owned()))
        } else {
            Ok(permitted)
        }
    }
}

/// DNS for the guarded client: system resolution, then the policy.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let permitted = policy.filter(&host, addrs)?;
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_internal_ranges_by_default() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused} must be refused");
        }
        for permitted in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(
                policy.permits(ip(permitted)),
                "{permitted} must be permitted"
            );
        }
    }

    #[test]
    fn the_allow_list_makes_exceptions() {
        let policy = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()], true);
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(!policy.permits(ip("127.0.0.2")));
        assert!(!policy.permits(ip("10.0.0.1")));
        assert!(policy.permits(ip("93.184.216.34")));
    }

    #[test]
    fn without_the_public_internet_only_the_allow_list_is_reachable() {
        let policy = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()], false);
        assert!(policy.permits(ip("127.0.0.1")));
        for refused in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "10.0.0.1"] {
            assert!(!policy.permits(ip(refused)), "{refused} must be refused");
        }
        assert!(policy
            .check_url(&"https://8.8.8.8/a.png".parse().unwrap())
            .is_err());
    }

    #[test]
    fn a_name_resolving_only_to_private_addresses_is_refused() {
        let policy = AddressPolicy::default();
        let private = [
            "10.0.0.5:0".parse().unwrap(),
            "[fd00::1]:0".parse().unwrap(),
        ];
        assert!(policy
            .filter("internal.example", private.into_iter())
            .is_err());
        let mixed = [
            "10.0.0.5:0".parse().unwrap(),
            "93.184.216.34:0".parse().unwrap(),
        ];
        assert_eq!(
            policy.filter("mixed.example", mixed.into_iter()).unwrap(),
            [mixed[1]]
        );
    }

    #[test]
    fn ip_literal_urls_are_checked() {
        let policy = AddressPolicy::default();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/x",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            assert!(policy.check_url(&url.parse().unwrap()).is_err(), "{url}");
        }
        assert!(policy
            .check_url(&"https://example.com/a.png".parse().unwrap())
            .is_ok());
    }
}
