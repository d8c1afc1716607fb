//! The classic BPF socket filter that keeps another instance's adverts out
//! of an instance's raw socket.
//!
//! Every instance has its own raw socket, so without a filter each advert on
//! an interface is copied to, parsed by and rejected in every instance on
//! it: N instances cost N² work. The filter lets the kernel deliver only
//! adverts for the instance's own VRID and adverts for a VRID no instance on
//! that interface and family runs (those are still counted and logged as
//! adverts for another VRID). Packets too short to hold a VRID are let
//! through too, so they are still counted as malformed.
//!
//! The program is hand-written with `libc::sock_filter`: there is no
//! well-kept crate that builds classic socket filters (the small ones on
//! crates.io only wrap `setsockopt` around opcodes written by hand), and the
//! program is a few dozen instructions, run by an interpreter in the tests.

/// Where the VRRP message starts in what the raw socket receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// IPv4 raw sockets get the IP header: the message is at IHL × 4.
    Ipv4,
    /// IPv6 raw sockets get the payload only.
    Ipv6,
}

/// What the filter returns to keep a whole packet (its length, capped).
const ACCEPT: u32 = u32::MAX;
/// What the filter returns to drop a packet.
const DROP: u32 = 0;
/// The VRID's offset in the VRRP message (after the version/type byte).
const VRID_OFFSET: u32 = 1;

// Opcodes, from <linux/filter.h>; libc has the parts but not as `u16`.
const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const LD_B_IND: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_IND) as u16;
const LD_W_LEN: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_LEN) as u16;
const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const ALU_ADD_K: u16 = (libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K) as u16;
const LD_IMM: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_IMM) as u16;
const LD_MEM: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_MEM) as u16;
const ST: u16 = libc::BPF_ST as u16;
const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const ALU_RSH_K: u16 = (libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16;
const ALU_RSH_X: u16 = (libc::BPF_ALU | libc::BPF_RSH | libc::BPF_X) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const TAX: u16 = (libc::BPF_MISC | libc::BPF_TAX) as u16;
const TXA: u16 = (libc::BPF_MISC | libc::BPF_TXA) as u16;
const JGE_X: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_X) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter for an instance of VRID `mine` among instances of VRIDs
/// `others` on the same interface and family: drops adverts for `others`
/// (except `mine`, should it be among them), keeps everything else.
pub fn program(layout: Layout, mine: u8, others: &[u8]) -> Vec<libc::sock_filter> {
    let mut prog = match layout {
        // X = IHL × 4; short packets are kept, then A = the VRID byte.
        Layout::Ipv4 => vec![
            stmt(LDX_B_MSH, 0),
            stmt(TXA, 0),
            stmt(ALU_ADD_K, VRID_OFFSET + 1),
            stmt(TAX, 0),
            stmt(LD_W_LEN, 0),
            jump(JGE_X, 0, 1, 0),
            stmt(RET_K, ACCEPT),
            stmt(LDX_B_MSH, 0),
            stmt(LD_B_IND, VRID_OFFSET),
        ],
        Layout::Ipv6 => vec![
            stmt(LD_W_LEN, 0),
            jump(JGE_K, VRID_OFFSET + 1, 1, 0),
            stmt(RET_K, ACCEPT),
            stmt(LD_B_ABS, VRID_OFFSET),
        ],
    };
    prog.extend([jump(JEQ_K, u32::from(mine), 0, 1), stmt(RET_K, ACCEPT)]);
    // The others as a 256-bit set, one 32-bit word per VRID / 32: the cost
    // per packet stays the same however many instances there are (a chain
    // of compares would cost every socket on the interface one per VRID).
    let mut words = [0u32; 8];
    for &vrid in others.iter().filter(|&&v| v != mine) {
        words[usize::from(vrid >> 5)] |= 1 << (vrid & 31);
    }
    // X = VRID % 32, A = VRID / 32.
    prog.extend([stmt(ST, 0), stmt(ALU_AND_K, 31), stmt(TAX, 0), stmt(LD_MEM, 0), stmt(ALU_RSH_K, 5)]);
    // A = the word of that VRID (0 when it has none), with `ja` to the end:
    // its offset is 32 bits wide, where a conditional jump's is 8.
    let used: Vec<(u32, u32)> = (0u32..).zip(words).filter(|&(_, w)| w != 0).collect();
    for (i, &(index, word)) in used.iter().enumerate() {
        let rest = 3 * (used.len() - i - 1) as u32 + 1;
        prog.extend([jump(JEQ_K, index, 0, 2), stmt(LD_IMM, word), stmt(JA, rest)]);
    }
    prog.extend([
        stmt(LD_IMM, 0),
        stmt(ALU_RSH_X, 0),
        stmt(ALU_AND_K, 1),
        jump(JEQ_K, 0, 0, 1),
        stmt(RET_K, ACCEPT),
        stmt(RET_K, DROP),
    ]);
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on `pkt` as the kernel's classic BPF does for the
    /// instructions [`program`] uses: an out-of-bounds load drops the packet.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc, mut mem) = (0u32, 0u32, 0usize, [0u32; 16]);
        let byte = |at: u32| pkt.get(at as usize).copied().map(u32::from);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_B_ABS => match byte(i.k) {
                    Some(b) => a = b,
                    None => return 0,
                },
                LD_B_IND => match byte(x.wrapping_add(i.k)) {
                    Some(b) => a = b,
                    None => return 0,
                },
                LD_W_LEN => a = pkt.len() as u32,
                LDX_B_MSH => match byte(i.k) {
                    Some(b) => x = (b & 0xf) * 4,
                    None => return 0,
                },
                LD_IMM => a = i.k,
                LD_MEM => a = mem[i.k as usize],
                ST => mem[i.k as usize] = a,
                ALU_ADD_K => a = a.wrapping_add(i.k),
                ALU_AND_K => a &= i.k,
                ALU_RSH_K => a >>= i.k,
                ALU_RSH_X => a = a.checked_shr(x).expect("shift of 32 or more"),
                JA => pc += i.k as usize,
                TXA => a = x,
                TAX => x = a,
                JGE_X => pc += usize::from(if a >= x { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                code => panic!("opcode {code:#x} not interpreted"),
            }
        }
    }

    /// An IPv4 packet with `ihl` words of header and a VRRP message of VRID `vrid`.
    fn v4(ihl: u8, vrid: u8) -> Vec<u8> {
        let mut pkt = vec![0u8; usize::from(ihl) * 4];
        pkt[0] = 0x40 | ihl;
        pkt[9] = 112;
        pkt.extend_from_slice(&[0x31, vrid, 100, 1, 0, 100, 0, 0, 10, 0, 0, 1]);
        pkt
    }

    fn v6(vrid: u8) -> Vec<u8> {
        vec![0x31, vrid, 100, 1, 0, 100, 0, 0, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    }

    #[test]
    fn ipv4_keeps_mine_and_unknown_drops_others() {
        let prog = program(Layout::Ipv4, 7, &[7, 3, 200, 3]);
        for ihl in [5, 6, 15] {
            assert_eq!(run(&prog, &v4(ihl, 7)), ACCEPT, "mine, ihl {ihl}");
            assert_eq!(run(&prog, &v4(ihl, 3)), DROP, "another instance's, ihl {ihl}");
            assert_eq!(run(&prog, &v4(ihl, 200)), DROP, "another instance's, ihl {ihl}");
            assert_eq!(run(&prog, &v4(ihl, 9)), ACCEPT, "nobody's, ihl {ihl}");
        }
    }

    #[test]
    fn ipv4_with_options_reads_past_them() {
        // With IHL 6, byte 21 (the VRID at IHL 5) is the VRRP type byte.
        let prog = program(Layout::Ipv4, 7, &[0x31]);
        let mut pkt = v4(6, 7);
        pkt[21] = 0x31;
        assert_eq!(run(&prog, &pkt), ACCEPT);
    }

    #[test]
    fn ipv6_keeps_mine_and_unknown_drops_others() {
        let prog = program(Layout::Ipv6, 7, &[3, 200]);
        assert_eq!(run(&prog, &v6(7)), ACCEPT);
        assert_eq!(run(&prog, &v6(3)), DROP);
        assert_eq!(run(&prog, &v6(200)), DROP);
        assert_eq!(run(&prog, &v6(9)), ACCEPT);
    }

    #[test]
    fn short_packets_are_kept_to_be_counted_as_malformed() {
        let prog = program(Layout::Ipv4, 7, &[3]);
        assert_eq!(run(&prog, &v4(5, 3)[..21]), ACCEPT);
        assert_eq!(run(&prog, &v4(5, 3)[..22]), DROP);
        let prog = program(Layout::Ipv6, 7, &[3]);
        assert_eq!(run(&prog, &[0x31]), ACCEPT);
        assert_eq!(run(&prog, &[]), ACCEPT);
        assert_eq!(run(&prog, &[0x31, 3]), DROP);
    }

    #[test]
    fn any_set_of_vrids() {
        // Spread over several words, with gaps, at the edges of words.
        let others = [0, 1, 31, 32, 63, 100, 128, 200, 254, 255];
        for mine in [0, 5, 31, 32, 64, 255] {
            let prog = program(Layout::Ipv6, mine, &others);
            for vrid in 0..=255u8 {
                let want = if vrid == mine || !others.contains(&vrid) { ACCEPT } else { DROP };
                assert_eq!(run(&prog, &v6(vrid)), want, "mine {mine}, VRID {vrid}");
            }
        }
    }

    #[test]
    fn every_vrid_fits() {
        let all: Vec<u8> = (0..=255).collect();
        let prog = program(Layout::Ipv4, 42, &all);
        assert!(prog.len() <= 64, "{} instructions", prog.len());
        assert_eq!(run(&prog, &v4(5, 42)), ACCEPT);
        for vrid in (0..=255).filter(|&v| v != 42) {
            assert_eq!(run(&prog, &v4(5, vrid)), DROP, "{vrid}");
        }
        // Alone on its interface: everything is kept.
        assert_eq!(run(&program(Layout::Ipv6, 42, &[]), &v6(1)), ACCEPT);
    }
}
