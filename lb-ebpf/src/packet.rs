//! Header parsing with bounds checks the verifier can follow.
//!
//! Every read goes through `ptr_at`, which checks `data + off + size <=
//! data_end` on the very pointer that is then dereferenced.

use aya_ebpf::programs::XdpContext;
use lb_common::proto;

pub enum Error {
    /// Headers broken before the destination address: nothing says the
    /// packet is a VIP's, so it is passed to the kernel to judge.
    Malformed,
    /// The VIP has no live backend: dropped and counted.
    NoBackend { vip_index: u32 },
}

pub enum Parsed {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): not ours.
    NotIp,
    /// IP, but nothing the balancer handles (other protocols, ICMP that is
    /// not an error about a flow).
    Other,
    V4(Packet<u32>),
    V6(Packet<[u32; 4]>),
}

/// The flow a packet belongs to, client side first. Addresses as they lie in
/// the packet (`u32` for IPv4, four words for IPv6), ports as on the wire.
/// For an ICMP error this is the flow of the packet it quotes: that packet
/// went from the VIP to the client, so its flow is the quote reversed.
pub struct Packet<A> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// An IP fragment (first or not): ports are unknown or must be ignored.
    pub fragment: bool,
    /// TCP SYN without ACK: the start of a new connection.
    pub syn: bool,
    /// An ICMP error about the flow above.
    pub icmp_error: bool,
    /// Headers truncated or inconsistent after the destination address.
    /// `proto` is the IP header's, the ports are those that could be read
    /// (0 if none): enough to tell whether the packet was meant for a VIP.
    pub malformed: bool,
}

/// What differs between the families when reading ICMP errors.
pub trait Family: Copy + PartialEq {
    /// ICMP's protocol number in this family.
    const ICMP: u8;
    /// The flow quoted by an ICMP error of type `ty` whose quote starts at
    /// `off`; `None` for other types and for quotes we cannot use.
    fn quote(ctx: &XdpContext, ty: u8, off: usize) -> Result<Option<Quote<Self>>, Error>;
}

impl Family for u32 {
    const ICMP: u8 = proto::ICMP;

    #[inline(always)]
    fn quote(ctx: &XdpContext, ty: u8, off: usize) -> Result<Option<Quote<Self>>, Error> {
        if ty == ICMP_DEST_UNREACH { icmp4_quote(ctx, off) } else { Ok(None) }
    }
}

impl Family for [u32; 4] {
    const ICMP: u8 = proto::ICMPV6;

    #[inline(always)]
    fn quote(ctx: &XdpContext, ty: u8, off: usize) -> Result<Option<Quote<Self>>, Error> {
        if ty == ICMPV6_DEST_UNREACH || ty == ICMPV6_PKT_TOOBIG { icmp6_quote(ctx, off) } else { Ok(None) }
    }
}

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800u16.to_be();
const ETH_P_IPV6: u16 = 0x86DDu16.to_be();
const ETH_P_8021Q: u16 = 0x8100u16.to_be();
const ETH_P_8021AD: u16 = 0x88A8u16.to_be();
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const ICMP_HLEN: usize = 8;
/// IPv4 flags/fragment offset: MF bit and the 13-bit offset, host order.
const IP_MF_OFFSET_MASK: u16 = 0x3FFF;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;
/// Extension headers walked before giving up on finding the transport.
const IPV6_MAX_EXT: usize = 4;

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Result<*const T, Error> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return Err(Error::Malformed);
    }
    Ok((start + off) as *const T)
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, off: usize) -> Result<T, Error> {
    let p = ptr_at::<T>(ctx, off)?;
    // SAFETY: ptr_at proved that size_of::<T>() bytes at p lie inside the
    // packet; read_unaligned makes no alignment assumption.
    Ok(unsafe { core::ptr::read_unaligned(p) })
}

/// A fixed-size header whose bounds were checked once. Fields are read
/// through this one checked pointer: had each read its own check, LLVM could
/// drop checks that a later, variable-length check implies, and the
/// verifier, which cannot follow that reasoning, would reject the program.
#[derive(Clone, Copy)]
struct Hdr<const N: usize>(*const u8);

impl<const N: usize> Hdr<N> {
    #[inline(always)]
    fn at(ctx: &XdpContext, off: usize) -> Result<Self, Error> {
        Ok(Self(ptr_at::<[u8; N]>(ctx, off)?.cast()))
    }

    #[inline(always)]
    fn get<T: Copy, const AT: usize>(self) -> T {
        const { assert!(AT + size_of::<T>() <= N) };
        // SAFETY: `at` proved N bytes from self.0 are in the packet and the
        // const assert keeps [AT, AT + size) inside them; unaligned is fine.
        unsafe { core::ptr::read_unaligned(self.0.add(AT).cast::<T>()) }
    }
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Error> {
    let mut ethertype: u16 = Hdr::<ETH_HLEN>::at(ctx, 0)?.get::<u16, 12>();
    let mut off = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = Hdr::<{ ETH_HLEN + VLAN_HLEN }>::at(ctx, 0)?.get::<u16, 16>();
        off += VLAN_HLEN;
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, off),
        ETH_P_IPV6 => parse_ipv6(ctx, off),
        _ => Ok(Parsed::NotIp),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<Parsed, Error> {
    let h = Hdr::<IPV4_MIN_HLEN>::at(ctx, off)?;
    let vihl: u8 = h.get::<u8, 0>();
    let tot_len = u16::from_be(h.get::<u16, 2>());
    let frag = u16::from_be(h.get::<u16, 6>());
    let proto: u8 = h.get::<u8, 9>();
    let src: u32 = h.get::<u32, 12>();
    let dst: u32 = h.get::<u32, 16>();
    let ihl = usize::from(vihl & 0x0F) * 4;
    let mut p = Packet {
        src,
        dst,
        sport: 0,
        dport: 0,
        proto,
        fragment: false,
        syn: false,
        icmp_error: false,
        malformed: false,
    };
    // The whole header, options included, must be present. (Two bytes, not
    // one: LLVM turns a one-byte check into `p < end`, from which the
    // verifier learns nothing.)
    if vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN || usize::from(tot_len) < ihl || Hdr::<2>::at(ctx, off + ihl - 2).is_err()
    {
        p.malformed = true;
        return Ok(Parsed::V4(p));
    }
    p.fragment = frag & IP_MF_OFFSET_MASK != 0;
    if p.fragment {
        return Ok(Parsed::V4(p));
    }
    Ok(transport_or_icmp(ctx, off + ihl, p)?.map_or(Parsed::Other, Parsed::V4))
}

/// The transport header, or for ICMP errors the quoted packet's flow; `None`
/// for anything the balancer does not handle.
#[inline(always)]
fn transport_or_icmp<A: Family>(ctx: &XdpContext, l4: usize, mut p: Packet<A>) -> Result<Option<Packet<A>>, Error> {
    if p.proto == proto::TCP || p.proto == proto::UDP {
        transport(ctx, l4, &mut p);
        return Ok(Some(p));
    }
    if p.proto != A::ICMP {
        return Ok(None);
    }
    let Ok(icmp) = Hdr::<ICMP_HLEN>::at(ctx, l4) else {
        p.malformed = true;
        return Ok(Some(p));
    };
    let ty: u8 = icmp.get::<u8, 0>();
    // A quote we cannot read is the kernel's business, not ours.
    let Ok(Some(q)) = A::quote(ctx, ty, l4 + ICMP_HLEN) else {
        return Ok(None);
    };
    // An error about a packet the VIP sent goes to the VIP; one sent
    // elsewhere is not for a VIP, whatever it quotes.
    if q.src != p.dst {
        return Ok(None);
    }
    p.src = q.dst;
    p.dst = q.src;
    p.sport = q.dport;
    p.dport = q.sport;
    p.proto = q.proto;
    p.icmp_error = true;
    Ok(Some(p))
}

/// The header fields of the packet an ICMP error quotes, as quoted.
pub struct Quote<A> {
    src: A,
    dst: A,
    sport: u16,
    dport: u16,
    proto: u8,
}

/// The ports and SYN flag; a truncated or inconsistent header marks the
/// packet malformed, keeping the ports if its first four bytes are there.
#[inline(always)]
fn transport<A>(ctx: &XdpContext, l4: usize, p: &mut Packet<A>) {
    if p.proto == proto::TCP {
        if let Ok(h) = Hdr::<TCP_MIN_HLEN>::at(ctx, l4) {
            p.sport = h.get::<u16, 0>();
            p.dport = h.get::<u16, 2>();
            let doff: u8 = h.get::<u8, 12>();
            let flags: u8 = h.get::<u8, 13>();
            p.malformed = usize::from(doff >> 4) * 4 < TCP_MIN_HLEN;
            // SYN set, ACK clear.
            p.syn = flags & 0x12 == 0x02;
            return;
        }
    } else if let Ok(h) = Hdr::<UDP_HLEN>::at(ctx, l4) {
        p.sport = h.get::<u16, 0>();
        p.dport = h.get::<u16, 2>();
        return;
    }
    p.malformed = true;
    if let Ok(ports) = read::<[u16; 2]>(ctx, l4) {
        p.sport = ports[0];
        p.dport = ports[1];
    }
}

/// Only the quoted IP header and the first 4 bytes after it (the ports):
/// RFC 792 guarantees 8 bytes of the original datagram.
#[inline(always)]
fn icmp4_quote(ctx: &XdpContext, off: usize) -> Result<Option<Quote<u32>>, Error> {
    let h = Hdr::<IPV4_MIN_HLEN>::at(ctx, off)?;
    let vihl: u8 = h.get::<u8, 0>();
    let frag = u16::from_be(h.get::<u16, 6>());
    let proto: u8 = h.get::<u8, 9>();
    let src: u32 = h.get::<u32, 12>();
    let dst: u32 = h.get::<u32, 16>();
    let ihl = usize::from(vihl & 0x0F) * 4;
    if vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN || frag & 0x1FFF != 0 || (proto != proto::TCP && proto != proto::UDP) {
        return Ok(None);
    }
    let ports: [u16; 2] = read(ctx, off + ihl)?;
    Ok(Some(Quote { src, dst, sport: ports[0], dport: ports[1], proto }))
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<Parsed, Error> {
    let h = Hdr::<IPV6_HLEN>::at(ctx, off)?;
    let vtc: u8 = h.get::<u8, 0>();
    let mut nh: u8 = h.get::<u8, 6>();
    let src: [u32; 4] = h.get::<[u32; 4], 8>();
    let dst: [u32; 4] = h.get::<[u32; 4], 24>();
    let mut malformed = vtc >> 4 != 6;
    let mut l4 = off + IPV6_HLEN;
    let mut fragment = false;
    // An extension header cut short leaves `nh` naming it, not a transport:
    // no VIP has that protocol, so the packet is passed (see `Packet`).
    for _ in 0..IPV6_MAX_EXT {
        if malformed {
            break;
        }
        match nh {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS => match read::<[u8; 2]>(ctx, l4) {
                Ok(ext) => {
                    nh = ext[0];
                    l4 += (usize::from(ext[1]) + 1) * 8;
                }
                Err(_) => malformed = true,
            },
            IPV6_FRAGMENT => match Hdr::<8>::at(ctx, l4) {
                Ok(frag) => {
                    nh = frag.get::<u8, 0>();
                    fragment = true;
                    l4 += 8;
                }
                Err(_) => malformed = true,
            },
            _ => break,
        }
    }
    let p = Packet { src, dst, sport: 0, dport: 0, proto: nh, fragment, syn: false, icmp_error: false, malformed };
    if fragment || malformed {
        return Ok(Parsed::V6(p));
    }
    Ok(transport_or_icmp(ctx, l4, p)?.map_or(Parsed::Other, Parsed::V6))
}

#[inline(always)]
fn icmp6_quote(ctx: &XdpContext, off: usize) -> Result<Option<Quote<[u32; 4]>>, Error> {
    let h = Hdr::<{ IPV6_HLEN + 4 }>::at(ctx, off)?;
    let vtc: u8 = h.get::<u8, 0>();
    let proto: u8 = h.get::<u8, 6>();
    if vtc >> 4 != 6 || (proto != proto::TCP && proto != proto::UDP) {
        return Ok(None);
    }
    Ok(Some(Quote {
        src: h.get::<[u32; 4], 8>(),
        dst: h.get::<[u32; 4], 24>(),
        sport: h.get::<u16, 40>(),
        dport: h.get::<u16, 42>(),
        proto,
    }))
}

/// DR forwarding: destination := backend, source := our interface.
#[inline(always)]
pub fn rewrite_macs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), Error> {
    let p = ptr_at::<[u8; 12]>(ctx, 0)? as *mut u8;
    // Whole-word stores: a byte-array copy compiles to a call to memmove.
    let d = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    let d2 = u16::from_ne_bytes([dst[4], dst[5]]);
    let s = u16::from_ne_bytes([src[0], src[1]]);
    let s2 = u32::from_ne_bytes([src[2], src[3], src[4], src[5]]);
    // SAFETY: ptr_at proved the 12 bytes of the two MAC fields are inside the
    // packet, which XDP lets the program write; write_unaligned makes no
    // alignment assumption.
    unsafe {
        core::ptr::write_unaligned(p.cast::<u32>(), d);
        core::ptr::write_unaligned(p.add(4).cast::<u16>(), d2);
        core::ptr::write_unaligned(p.add(6).cast::<u16>(), s);
        core::ptr::write_unaligned(p.add(8).cast::<u32>(), s2);
    }
    Ok(())
}
