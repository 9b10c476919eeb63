//! CPU time of the processes in a benchmark, for `bench`'s "CPU per message": the bench's own
//! process (the load generator) and, when the cluster runs on this machine, the processes
//! that serve its brokers and NameServers. A server process is found from its listening port:
//! the socket in `/proc/net/tcp` (or `tcp6`) and the process whose `/proc/PID/fd` holds it.
//! Linux only; elsewhere, or for a remote cluster, the servers are simply not found.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// CPU time (user + system) of a process so far, in microseconds; `None` if it is gone or
/// unreadable.
pub fn process_cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|ticks| ticks * 1_000_000 / ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after the
/// last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The processes on this machine listening on `addrs` (each found once). An address whose
/// port nobody here listens on, or whose listener belongs to a process we may not inspect,
/// is left out.
pub fn local_listeners(addrs: &[SocketAddr]) -> BTreeSet<u32> {
    let mut inodes = BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            for (local, inode) in listening_sockets(&text) {
                inodes.insert(inode, local);
            }
        }
    }
    let wanted: BTreeSet<u64> = inodes
        .iter()
        .filter(|(_, (ip, port))| {
            addrs.iter().any(|a| a.port() == *port && (ip.is_unspecified() || *ip == a.ip()))
        })
        .map(|(inode, _)| *inode)
        .collect();
    if wanted.is_empty() {
        return BTreeSet::new();
    }
    let mut pids = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return pids };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if inode.is_some_and(|i| wanted.contains(&i)) {
                pids.insert(pid);
                break;
            }
        }
    }
    pids
}

/// Listening sockets of a `/proc/net/tcp{,6}` table: (local address, inode).
fn listening_sockets(text: &str) -> Vec<((std::net::IpAddr, u16), u64)> {
    const LISTEN: &str = "0A";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != LISTEN {
                return None;
            }
            let (ip, port) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(((parse_proc_ip(ip)?, port), f[9].parse().ok()?))
        })
        .collect()
}

/// An address as `/proc/net/tcp` prints it: the bytes of each 32-bit word in host order (little
/// endian here), 8 hex digits for IPv4, 32 for IPv6.
fn parse_proc_ip(hex: &str) -> Option<std::net::IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    match words.as_slice() {
        [w] => Some(std::net::Ipv4Addr::from(w.to_le_bytes()).into()),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            Some(std::net::Ipv6Addr::from(bytes).into())
        }
        _ => None,
    }
}

/// CPU used by a set of processes between two readings.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pids: BTreeSet<u32>,
    start: BTreeMap<u32, u64>,
}

impl CpuMeter {
    /// Starts measuring `pids` (those that can be read now).
    pub fn start(pids: BTreeSet<u32>) -> Self {
        let start: BTreeMap<u32, u64> =
            pids.iter().filter_map(|p| Some((*p, process_cpu_us(*p)?))).collect();
        CpuMeter { pids: start.keys().copied().collect(), start }
    }

    /// The processes measured.
    pub fn pids(&self) -> &BTreeSet<u32> {
        &self.pids
    }

    /// CPU microseconds used since the start by the processes still readable.
    pub fn used_us(&self) -> u64 {
        self.start
            .iter()
            .filter_map(|(pid, t0)| Some(process_cpu_us(*pid)?.saturating_sub(*t0)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(325));
        assert_eq!(parse_stat_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn proc_net_tcp_lines_are_read() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2694 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:D2B4 0100007F:2694 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n";
        let got = listening_sockets(text);
        assert_eq!(got, vec![((std::net::Ipv4Addr::LOCALHOST.into(), 9876), 12345)]);
        let v6 = parse_proc_ip("00000000000000000000000001000000").unwrap();
        assert_eq!(v6, std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn this_process_is_found_by_its_listener_and_its_cpu_grows() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pids = local_listeners(&[addr]);
        assert!(pids.contains(&std::process::id()), "{pids:?}");
        let meter = CpuMeter::start(pids);
        let mut x = 0u64;
        let mut spun = 0;
        while meter.used_us() == 0 && spun < 1_000_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            spun += 1;
        }
        std::hint::black_box(x);
        assert!(meter.used_us() > 0, "CPU time was counted");
    }
}
