//! IPv4 + TCP SYN packets for the raw-socket generator, with correct header
//! and TCP (pseudo-header) checksums.
use std::net::{Ipv4Addr, SocketAddrV4};

/// IPv4 header (20) + TCP header without options (20).
pub(crate) const PACKET_LEN: usize = 40;
const IP_HEADER_LEN: usize = 20;
const TCP_HEADER_LEN: usize = 20;
const TTL: u8 = 64;
const WINDOW: u16 = 64_240;
const TCP_FLAG_SYN: u8 = 0x02;

/// A TCP SYN from `src:src_port` to `dst`, ready for an `IP_HDRINCL` socket.
pub(crate) fn syn(src: Ipv4Addr, src_port: u16, dst: SocketAddrV4, seq: u32) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    write_ip_header(&mut p[..IP_HEADER_LEN], src, *dst.ip());
    write_tcp_header(&mut p[IP_HEADER_LEN..], src_port, dst.port(), seq);
    let tcp_sum = tcp_checksum(src, *dst.ip(), &p[IP_HEADER_LEN..]);
    p[IP_HEADER_LEN + 16..IP_HEADER_LEN + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    p
}

fn write_ip_header(h: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    h[0] = 0x45; // version 4, IHL 5 words
    h[2..4].copy_from_slice(&(PACKET_LEN as u16).to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = TTL;
    h[9] = libc::IPPROTO_TCP as u8;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[h]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
}

fn write_tcp_header(t: &mut [u8], src_port: u16, dst_port: u16, seq: u32) {
    t[0..2].copy_from_slice(&src_port.to_be_bytes());
    t[2..4].copy_from_slice(&dst_port.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = ((TCP_HEADER_LEN / 4) as u8) << 4;
    t[13] = TCP_FLAG_SYN;
    t[14..16].copy_from_slice(&WINDOW.to_be_bytes());
}

/// TCP checksum over the IPv4 pseudo-header and the segment (checksum field zero).
fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let len = (segment.len() as u16).to_be_bytes();
    let pseudo = [0, libc::IPPROTO_TCP as u8, len[0], len[1]];
    checksum(&[&src.octets(), &dst.octets(), &pseudo, segment])
}

/// RFC 1071 Internet checksum of the concatenated chunks (each of even length
/// except possibly the last).
fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        let mut words = chunk.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 9);
    const SRC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2, complement 0x220d.
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]), 0x220d);
    }

    #[test]
    fn headers_verify_to_zero() {
        let p = syn(SRC, 40_000, DST, 7);
        assert_eq!(checksum(&[&p[..IP_HEADER_LEN]]), 0, "IP header checksum");
        assert_eq!(tcp_checksum(SRC, *DST.ip(), &p[IP_HEADER_LEN..]), 0, "TCP checksum");
    }

    #[test]
    fn fields_are_in_place() {
        let p = syn(SRC, 0x1234, DST, 0);
        assert_eq!(&p[12..16], &[203, 0, 113, 1]);
        assert_eq!(&p[16..20], &[203, 0, 113, 10]);
        assert_eq!(&p[20..22], &[0x12, 0x34]);
        assert_eq!(&p[22..24], &[0, 9]);
        assert_eq!(p[33], TCP_FLAG_SYN);
    }
}
