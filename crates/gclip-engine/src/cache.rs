//! Data-cache sizes of the running CPU, so GEMM blocking fits the caches at
//! hand rather than one fixed model: CPUID (leaf 4 on Intel, 0x8000001D on
//! AMD), then sysfs, then conservative defaults.

use std::sync::OnceLock;

/// Per-core data-cache sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    /// Level-1 data cache.
    pub l1d: usize,
    /// Level-2 (unified) cache.
    pub l2: usize,
    /// Where the figures came from: `cpuid`, `sysfs` or `default`.
    pub source: &'static str,
}

/// Zen 2 / Skylake-client figures: the smallest common case, so blocks
/// derived from them never overflow a real cache.
const DEFAULT: CacheSizes = CacheSizes {
    l1d: 32 << 10,
    l2: 512 << 10,
    source: "default",
};

/// The detected sizes (computed once).
pub fn sizes() -> CacheSizes {
    static S: OnceLock<CacheSizes> = OnceLock::new();
    *S.get_or_init(|| {
        let found = from_cpuid().or_else(from_sysfs).unwrap_or(DEFAULT);
        // A VM may report nonsense (zero, or an L1 larger than L2).
        if found.l1d < 8 << 10 || found.l2 < found.l1d {
            DEFAULT
        } else {
            found
        }
    })
}

#[cfg(target_arch = "x86_64")]
// CPUID intrinsics are safe fns on recent toolchains, unsafe on older ones.
#[allow(unused_unsafe)]
fn from_cpuid() -> Option<CacheSizes> {
    use std::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};
    // SAFETY: CPUID exists on every x86-64 CPU; leaves are range-checked
    // against the maximum the CPU reports before use.
    let (max_basic, vendor) = {
        let r = unsafe { __cpuid(0) };
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&r.ebx.to_le_bytes());
        v[4..8].copy_from_slice(&r.edx.to_le_bytes());
        v[8..].copy_from_slice(&r.ecx.to_le_bytes());
        (r.eax, v)
    };
    // SAFETY: as above.
    let max_ext = unsafe { __cpuid(0x8000_0000) }.eax;
    let leaf = match &vendor {
        b"AuthenticAMD" | b"HygonGenuine" if max_ext >= 0x8000_001D => 0x8000_001D,
        _ if max_basic >= 4 => 4,
        _ => return None,
    };
    let (mut l1d, mut l2) = (0usize, 0usize);
    for sub in 0..16 {
        // SAFETY: `leaf` is within the supported range (checked above).
        let r: CpuidResult = unsafe { __cpuid_count(leaf, sub) };
        let kind = r.eax & 0x1f; // 0 = no more caches, 1 = data, 2 = code, 3 = unified
        if kind == 0 {
            break;
        }
        let level = (r.eax >> 5) & 0x7;
        let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
        let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
        let line = (r.ebx & 0xfff) as usize + 1;
        let sets = r.ecx as usize + 1;
        let size = ways * parts * line * sets;
        match (level, kind) {
            (1, 1) | (1, 3) => l1d = size,
            (2, 2) => {}
            (2, _) => l2 = size,
            _ => {}
        }
    }
    (l1d > 0 && l2 > 0).then_some(CacheSizes {
        l1d,
        l2,
        source: "cpuid",
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn from_cpuid() -> Option<CacheSizes> {
    None
}

fn from_sysfs() -> Option<CacheSizes> {
    let (mut l1d, mut l2) = (0usize, 0usize);
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            break;
        };
        let Some(bytes) = parse_size(size.trim()) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") | ("1", "Unified") => l1d = bytes,
            ("2", "Data") | ("2", "Unified") => l2 = bytes,
            _ => {}
        }
    }
    (l1d > 0 && l2 > 0).then_some(CacheSizes {
        l1d,
        l2,
        source: "sysfs",
    })
}

/// Parses sysfs sizes such as `48K`, `2048K`, `1M`.
fn parse_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_sizes_parse() {
        assert_eq!(parse_size("48K"), Some(48 << 10));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn detected_sizes_are_plausible() {
        let s = sizes();
        assert!(s.l1d >= 8 << 10 && s.l1d <= 1 << 20, "{s:?}");
        assert!(s.l2 >= s.l1d && s.l2 <= 64 << 20, "{s:?}");
    }
}
