//! Load modes: which destination each generated connection goes to.
//!
//! `all-public`: every SYN to the public server address. `mixed`: one
//! connection in ten to the public address, the rest to the private one, so
//! the default rules (TCP to PUBLIC only) log a tenth of the kernel's events
//! and the kernel pre-filter has nine tenths to drop.
use std::net::Ipv4Addr;

use super::netns;

/// Which destinations the load uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    AllPublic,
    Mixed,
}

/// In `mixed` mode, connection `i` goes to the public address iff `i % PUBLIC_EVERY == 0`.
const PUBLIC_EVERY: u64 = 10;

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::AllPublic, Mode::Mixed];

    pub fn label(self) -> &'static str {
        match self {
            Mode::AllPublic => "all-public",
            Mode::Mixed => "mixed",
        }
    }

    /// What the report says about the load.
    pub fn describe(self) -> String {
        match self {
            Mode::AllPublic => format!("every SYN to {} (PUBLIC)", netns::SERVER_ADDR),
            Mode::Mixed => format!("1 SYN in {PUBLIC_EVERY} to {} (PUBLIC), the others to {} (PRIVATE)", netns::SERVER_ADDR, netns::PRIVATE_SERVER_ADDR),
        }
    }

    /// The destination address of connection `i`.
    pub fn destination(self, i: u64) -> Ipv4Addr {
        match self {
            Mode::Mixed if !i.is_multiple_of(PUBLIC_EVERY) => netns::PRIVATE_SERVER_ADDR,
            _ => netns::SERVER_ADDR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_sends_a_tenth_to_the_public_address() {
        let public = (0..1000).filter(|&i| Mode::Mixed.destination(i) == netns::SERVER_ADDR).count() as u64;
        assert_eq!(public, 100);
        assert_eq!(Mode::Mixed.destination(0), netns::SERVER_ADDR);
        assert_eq!(Mode::Mixed.destination(1), netns::PRIVATE_SERVER_ADDR);
    }

    #[test]
    fn all_public_sends_everything_to_the_public_address() {
        assert!((0..100).all(|i| Mode::AllPublic.destination(i) == netns::SERVER_ADDR));
    }
}
