//! The CPU's data caches, detected at run time, and the GEMM blocking derived from them.
//!
//! The packed GEMM (`gemm/driver.rs`) cuts its operands into blocks that are meant to stay in
//! one cache level each. Constants picked on one machine are wrong on the next (the AVX-512
//! blocking chosen for a 32 KiB L1d ran at 64 % of peak at 2048³ on a Zen 5), so the sizes are
//! read from the CPU and the blocks computed from them by [`Blocking::model`].
//!
//! # Detection
//!
//! [`detected`] asks, in this order, and keeps the first answer that names an L1d and an L2:
//! 1. CPUID: leaf 4 on Intel (deterministic cache parameters), leaf 0x8000001D on AMD and Hygon
//!    (the same register layout, present with the TopologyExtensions bit). Each sub-leaf gives
//!    a cache's level, type, ways × partitions × line size × sets, and how many logical
//!    processors share it.
//! 2. Linux sysfs: `/sys/devices/system/cpu/cpu0/cache/index*/` (`level`, `type`, `size`,
//!    `shared_cpu_list`).
//! 3. [`Caches::DEFAULT`]: a 32 KiB L1d, 512 KiB L2 and 2 MiB of L3 per core, smaller than or
//!    equal to every x86-64 server core since 2017 and most recent ARM cores, so blocks sized
//!    from it still fit where the real caches could not be read.
//!
//! Nothing here panics: a reading that makes no sense (zero, absurd sizes, a level missing) is
//! skipped and the next source asked. The result is computed once per process.
//!
//! # The blocking model
//!
//! [`Blocking::model`] derives the GEMM's KC, MC and NC from the caches, the microkernel's
//! MR×NR tile and the element size S. It follows the analytical approach of Low et al.
//! ("Analytical modeling is enough for high-performance BLIS", TOMS 2016): say which operand
//! each cache level holds, and size the blocks so they fit; but it places the B sliver in L2
//! rather than L1, and splits L2 between MC and KC by the traffic it causes.
//!
//! The driver's loops (`gemm/driver.rs`) keep an MC×KC block of A in L2 while loop 2 walks
//! the KC×NR slivers of the packed B panel (which lives in L3), and each sliver meets all
//! MC/MR slivers of the block. For one pass of loop 2 the core then fetches from beyond L2:
//! each B sliver once (KC·NR·S bytes) and each C tile twice, read and written (2·MC·NR·S), for
//! 2·MC·NR·KC flops. Bytes per flop are `S/2 · (1/MC + 2/KC)`: a shallow KC re-reads and
//! re-writes C too often, a short MC re-fetches B too often. With the block of A given half
//! of L2 (the other half holds the B sliver and the C tiles passing through),
//! `MC·KC = X = L2 / (2·S)`, and the traffic is least at
//!
//! ```text
//! KC = √(2·X),   MC = √(X / 2)   (so KC = 2·MC),   X = L2 / (2·S)
//! NC = L3 per sharer / (2 · KC · S)                 (a KC×NC panel of B in half of it)
//! ```
//!
//! rounded down to multiples of 8, MR and NR. For a 1 MiB L2 and f32 that is KC 512, MC 256
//! (252 with MR = 12), which is what a sweep on a Zen 5 found fastest (KC 512–1024 beat 192 by
//! 15–20 % at 2048³; `shared/results/2026-12-07-avx512-blocking-sweep.txt`); for a 512 KiB L2
//! it gives KC 360, MC 180 where the AVX2 kernel's best measured constants on a Zen 3 were
//! 384 and 144.
//!
//! Why the B sliver need not stay in L1, as Low et al. keep it: at 512 deep and 32 wide it is
//! 64 KiB. Per k step the microkernel loads (MR + NR)·S bytes for MR·NR multiply-adds; for the
//! 12×32 AVX-512 tile that is 176 bytes per 24 FMA instructions, under 16 bytes per cycle at
//! two FMAs per cycle, and every x86-64 core since Haswell moves at least 32 bytes per cycle
//! from L2 to L1. So L1 only has to hold the lines in flight, and KC is free to grow until L2
//! is the limit. L1 sets a floor instead: KC is never below the depth at which the B sliver
//! fills half of L1 (Low et al.'s choice), which only matters for a core with a tiny L2.
//!
//! L1 and L2 are taken whole (one GEMM thread per core is the case modelled); L3 is divided
//! among the logical processors that share it. Without an L3, NC is sized as if it were four
//! times L2. The results are clamped to ranges that keep the driver's buffers reasonable
//! (KC 64–2048, MC 2·MR–4096, NC 4·NR–16384).

use std::sync::OnceLock;

/// One cache level: its size and how many logical processors share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLevel {
    /// Capacity in bytes.
    pub bytes: usize,
    /// Logical processors (hardware threads) sharing this cache, at least 1.
    pub shared_by: usize,
}

impl CacheLevel {
    /// The share of one logical processor: `bytes / shared_by`.
    pub fn per_thread(&self) -> usize {
        self.bytes / self.shared_by.max(1)
    }
}

/// Where the cache sizes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    /// The CPUID instruction (leaf 4 or 0x8000001D).
    Cpuid,
    /// Linux's `/sys/devices/system/cpu/cpu0/cache`.
    Sysfs,
    /// Neither could be read: [`Caches::DEFAULT`].
    Default,
}

impl CacheSource {
    /// A lowercase name for reports (`ember info`).
    pub fn name(self) -> &'static str {
        match self {
            CacheSource::Cpuid => "cpuid",
            CacheSource::Sysfs => "sysfs",
            CacheSource::Default => "defaults",
        }
    }
}

/// The data caches of one core, as seen by the GEMM blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caches {
    /// Level 1 data cache.
    pub l1d: CacheLevel,
    /// Level 2 (data or unified) cache.
    pub l2: CacheLevel,
    /// Level 3 cache, if the CPU has one.
    pub l3: Option<CacheLevel>,
    /// Where these figures came from.
    pub source: CacheSource,
}

impl Caches {
    /// What the blocking assumes when nothing can be read (see the module docs).
    pub const DEFAULT: Caches = Caches {
        l1d: CacheLevel {
            bytes: 32 << 10,
            shared_by: 1,
        },
        l2: CacheLevel {
            bytes: 512 << 10,
            shared_by: 1,
        },
        l3: Some(CacheLevel {
            bytes: 2 << 20,
            shared_by: 1,
        }),
        source: CacheSource::Default,
    };

    /// Builds a `Caches` from the levels found (level, type, size, sharing), or `None` when
    /// there is no plausible L1d and L2. Instruction caches are ignored.
    fn from_levels(found: &[Found], source: CacheSource) -> Option<Caches> {
        let pick = |level: u32| {
            found
                .iter()
                .filter(|f| f.level == level && f.data && plausible(f.cache.bytes))
                .map(|f| f.cache)
                .max_by_key(|c| c.bytes)
        };
        Some(Caches {
            l1d: pick(1)?,
            l2: pick(2)?,
            l3: pick(3),
            source,
        })
    }
}

impl std::fmt::Display for Caches {
    /// `L1d 32 KiB, L2 1 MiB, L3 32 MiB shared by 2 (cpuid)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = |f: &mut std::fmt::Formatter<'_>, name: &str, c: &CacheLevel| {
            write!(f, "{name} {}", human(c.bytes))?;
            if c.shared_by > 1 {
                write!(f, " shared by {}", c.shared_by)?;
            }
            Ok(())
        };
        level(f, "L1d", &self.l1d)?;
        f.write_str(", ")?;
        level(f, "L2", &self.l2)?;
        match &self.l3 {
            Some(l3) => {
                f.write_str(", ")?;
                level(f, "L3", l3)?;
            }
            None => f.write_str(", no L3")?,
        }
        write!(f, " ({})", self.source.name())
    }
}

/// `bytes` in KiB or MiB, whichever is whole.
fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// A cache size no real CPU reports outside of: 1 KiB to 4 GiB.
fn plausible(bytes: usize) -> bool {
    (1 << 10..=1 << 32).contains(&bytes)
}

/// One cache as a source describes it.
#[derive(Debug, Clone, Copy)]
struct Found {
    level: u32,
    /// Data or unified (not instruction-only).
    data: bool,
    cache: CacheLevel,
}

/// The block sizes of the packed GEMM's loops (see the module docs for the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// Rows of A per packed block (a multiple of MR; the block lives in L2).
    pub mc: usize,
    /// Depth of a K slice.
    pub kc: usize,
    /// Columns of B per packed panel (a multiple of NR; the panel lives in L3).
    pub nc: usize,
}

impl Blocking {
    /// KC, MC and NC for a microkernel with an `mr`×`nr` tile of `elem_bytes`-byte elements on
    /// a core with `caches` (the model in the module docs). Any inputs give valid sizes: zero
    /// tile dimensions or element sizes are treated as 1.
    pub fn model(caches: &Caches, mr: usize, nr: usize, elem_bytes: usize) -> Blocking {
        let (mr, nr, s) = (mr.max(1), nr.max(1), elem_bytes.max(1));
        // Elements of A's block: half of L2.
        let x = (caches.l2.bytes / 2 / s).max(1);
        let kc_l2 = x.saturating_mul(2).isqrt();
        // Floor: the B sliver in half of L1 (Low et al.'s placement).
        let kc_l1 = caches.l1d.bytes / 2 / (nr * s);
        let kc = round_down(kc_l2.max(kc_l1), 8).clamp(64, 2048);
        let mc = round_down((x / kc).min(4096), mr).max(2 * mr);
        let l3 = caches
            .l3
            .map_or(caches.l2.bytes.saturating_mul(4), |l3| l3.per_thread());
        let nc = round_down((l3 / 2 / (kc * s)).min(16384), nr).max(4 * nr);
        Blocking { mc, kc, nc }
    }
}

/// `x` rounded down to a multiple of `m` (at least `m`).
fn round_down(x: usize, m: usize) -> usize {
    (x / m * m).max(m)
}

/// The caches of this CPU (detected once per process; see the module docs for the sources).
pub fn detected() -> Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    *CACHES.get_or_init(|| from_cpuid().or_else(from_sysfs).unwrap_or(Caches::DEFAULT))
}

/// The caches the GEMM blocking is computed from on this thread: [`detected`], unless a test
/// has put small ones in place (`test_override`) so that its products cross every block.
pub(crate) fn for_blocking() -> Caches {
    #[cfg(test)]
    if let Some(c) = test_override::get() {
        return c;
    }
    detected()
}

/// A per-thread replacement for the detected caches, for tests whose sizes must cross the
/// GEMM's block boundaries whatever machine runs them.
#[cfg(test)]
pub(crate) mod test_override {
    use super::{CacheLevel, CacheSource, Caches};
    use std::cell::Cell;

    /// A small core (L1d 32 KiB, L2 256 KiB, 1 MiB of L3): f32 blocks KC 256, MC 120 (MR 12)
    /// or 126 (MR 6), NC 512; f64 KC 256, MC 60, NC 256.
    pub(crate) const SMALL: Caches = Caches {
        l1d: CacheLevel {
            bytes: 32 << 10,
            shared_by: 1,
        },
        l2: CacheLevel {
            bytes: 256 << 10,
            shared_by: 1,
        },
        l3: Some(CacheLevel {
            bytes: 1 << 20,
            shared_by: 1,
        }),
        source: CacheSource::Default,
    };

    thread_local! {
        static CACHES: Cell<Option<Caches>> = const { Cell::new(None) };
    }

    /// The override in force on this thread, if any.
    pub(crate) fn get() -> Option<Caches> {
        CACHES.with(Cell::get)
    }

    /// Runs `f` with the blocking computed from `c` on this thread.
    pub(crate) fn with<R>(c: Caches, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Caches>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CACHES.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CACHES.with(|cell| cell.replace(Some(c))));
        f()
    }
}

/// Decodes one sub-leaf of CPUID leaf 4 / 0x8000001D (registers EAX, EBX, ECX): `None` for
/// the terminating "no more caches" entry or a level that makes no sense.
fn decode_cpuid_cache(eax: u32, ebx: u32, ecx: u32) -> Option<Found> {
    let kind = eax & 0x1f; // 0 none, 1 data, 2 instruction, 3 unified
    if kind == 0 || kind > 3 {
        return None;
    }
    let level = (eax >> 5) & 0x7;
    let shared_by = ((eax >> 14) & 0xfff) as usize + 1;
    let line = (ebx & 0xfff) as usize + 1;
    let partitions = ((ebx >> 12) & 0x3ff) as usize + 1;
    let ways = ((ebx >> 22) & 0x3ff) as usize + 1;
    let sets = ecx as usize + 1;
    let bytes = ways
        .checked_mul(partitions)?
        .checked_mul(line)?
        .checked_mul(sets)?;
    Some(Found {
        level,
        data: kind != 2,
        cache: CacheLevel { bytes, shared_by },
    })
}

/// The caches as CPUID describes them (x86-64 only).
fn from_cpuid() -> Option<Caches> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86-64 CPU; leaves above the maximum reported by leaf 0
        // (or 0x80000000) are never asked for.
        let cpuid = |leaf: u32, sub: u32| unsafe { __cpuid_count(leaf, sub) };
        let id = cpuid(0, 0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&id.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&id.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&id.ecx.to_le_bytes());
        let leaf = match &vendor {
            b"AuthenticAMD" | b"HygonGenuine" => {
                let max_ext = cpuid(0x8000_0000, 0).eax;
                let topology_ext =
                    max_ext >= 0x8000_0001 && cpuid(0x8000_0001, 0).ecx & (1 << 22) != 0;
                (max_ext >= 0x8000_001d && topology_ext).then_some(0x8000_001d)
            }
            _ => (id.eax >= 4).then_some(4),
        }?;
        let found: Vec<Found> = (0..16)
            .map(|sub| cpuid(leaf, sub))
            .map_while(|r| decode_cpuid_cache(r.eax, r.ebx, r.ecx))
            .collect();
        Caches::from_levels(&found, CacheSource::Cpuid)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The caches as Linux's sysfs describes them for cpu0.
fn from_sysfs() -> Option<Caches> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut found = Vec::new();
    for i in 0..16 {
        let index = dir.join(format!("index{i}"));
        let read = |name: &str| std::fs::read_to_string(index.join(name)).ok();
        let Some(level) = read("level") else {
            break;
        };
        let parsed = (|| {
            let level = level.trim().parse().ok()?;
            let kind = read("type")?;
            let bytes = parse_size(&read("size")?)?;
            let shared_by = read("shared_cpu_list")
                .and_then(|l| count_cpu_list(&l))
                .unwrap_or(1);
            Some(Found {
                level,
                data: kind.trim() != "Instruction",
                cache: CacheLevel { bytes, shared_by },
            })
        })();
        found.extend(parsed);
    }
    Caches::from_levels(&found, CacheSource::Sysfs)
}

/// Parses sysfs's cache size: `32K`, `1024K`, `32M`, or plain bytes.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<usize>().ok()?.checked_mul(unit)
}

/// Counts the CPUs in a sysfs CPU list such as `0-3,8-11` or `0,2` (`None` if malformed).
fn count_cpu_list(s: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.trim().parse::<usize>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(bytes: usize, shared_by: usize) -> CacheLevel {
        CacheLevel { bytes, shared_by }
    }

    /// The Zen 5 of issue 18, a Skylake-SP core and a Zen 3 core.
    fn machines() -> [(&'static str, Caches); 3] {
        let k = 1 << 10;
        [
            (
                "zen5",
                Caches {
                    l1d: level(48 * k, 1),
                    l2: level(1024 * k, 1),
                    l3: Some(level(32 * 1024 * k, 2)),
                    source: CacheSource::Default,
                },
            ),
            (
                "skylake-sp",
                Caches {
                    l1d: level(32 * k, 1),
                    l2: level(1024 * k, 1),
                    l3: Some(level(1408 * k, 1)),
                    source: CacheSource::Default,
                },
            ),
            (
                "zen3",
                Caches {
                    l1d: level(32 * k, 1),
                    l2: level(512 * k, 1),
                    l3: Some(level(32 * 1024 * k, 8)),
                    source: CacheSource::Default,
                },
            ),
        ]
    }

    #[test]
    fn model_values_for_known_machines() {
        // (machine, mr, nr, bytes) -> (mc, kc, nc), worked out by hand from the formulas.
        let want = [
            // 1 MiB L2, f32: X = 131072, KC = √262144 = 512, MC = 256 → 252 (MR 12).
            // L3 16 MiB per thread: NC = 8 MiB / 2048 B = 4096.
            ("zen5", 12, 32, 4, (252, 512, 4096)),
            // L3 1.375 MiB: NC = 704 KiB / 2048 B = 352.
            ("skylake-sp", 12, 32, 4, (252, 512, 352)),
            // 512 KiB L2: X = 65536, KC = ⌊√131072⌋ = 362 → 360, MC = 182 → 180 (MR 6);
            // L3 4 MiB per thread: NC = 2 MiB / 1440 B = 1456 → 1456 (NR 16).
            ("zen3", 6, 16, 4, (180, 360, 1456)),
            // f64 on the Zen 3: X = 32768, KC = 256, MC = 128 → 126; NC = 2 MiB / 2 KiB.
            ("zen3", 6, 8, 8, (126, 256, 1024)),
        ];
        let machines = machines();
        for (name, mr, nr, s, (mc, kc, nc)) in want {
            let caches = machines.iter().find(|m| m.0 == name).map(|m| m.1).unwrap();
            let b = Blocking::model(&caches, mr, nr, s);
            assert_eq!(
                (b.mc, b.kc, b.nc),
                (mc, kc, nc),
                "{name} {mr}x{nr} {s}-byte"
            );
        }
    }

    #[test]
    fn small_override_blocks() {
        let small = test_override::SMALL;
        let b = |mr, nr, s| {
            let b = Blocking::model(&small, mr, nr, s);
            (b.mc, b.kc, b.nc)
        };
        assert_eq!(b(12, 32, 4), (120, 256, 512));
        assert_eq!(b(6, 16, 4), (126, 256, 512));
        assert_eq!(b(6, 8, 8), (60, 256, 256));
        assert_eq!(for_blocking(), detected());
        assert_eq!(test_override::with(small, for_blocking), small);
    }

    #[test]
    fn model_is_sane_everywhere() {
        let tiles = [(12, 32, 4), (6, 16, 4), (6, 8, 8), (4, 8, 4), (4, 4, 8)];
        for (name, caches) in machines() {
            for (mr, nr, s) in tiles {
                let b = Blocking::model(&caches, mr, nr, s);
                let ctx = format!("{name} {mr}x{nr}x{s}: {b:?}");
                assert!(b.mc.is_multiple_of(mr) && b.nc.is_multiple_of(nr), "{ctx}");
                assert!(b.kc.is_multiple_of(8) && b.kc >= 64, "{ctx}");
                // The block of A fits in half of L2, the panel of B in half the L3 share.
                assert!(b.mc * b.kc * s <= caches.l2.bytes / 2, "{ctx}");
                let l3 = caches.l3.unwrap().per_thread();
                assert!(b.nc * b.kc * s <= l3 / 2 || b.nc == 4 * nr, "{ctx}");
                // Both blocks long enough to amortise the slivers' fetches.
                assert!(b.mc >= 8 * mr && b.kc >= 128, "{ctx}");
            }
        }
    }

    #[test]
    fn model_survives_nonsense() {
        let zero = Caches {
            l1d: level(0, 0),
            l2: level(0, 0),
            l3: Some(level(0, 0)),
            source: CacheSource::Default,
        };
        let huge = Caches {
            l1d: level(usize::MAX, 1),
            l2: level(usize::MAX, 1),
            l3: None,
            source: CacheSource::Default,
        };
        for caches in [zero, huge, Caches::DEFAULT] {
            for (mr, nr, s) in [(0, 0, 0), (12, 32, 4), (1, 1, 1)] {
                let b = Blocking::model(&caches, mr, nr, s);
                let (mr, nr) = (mr.max(1), nr.max(1));
                assert!(b.mc >= mr && b.kc >= 64 && b.nc >= nr, "{b:?}");
                assert!(b.mc <= 4096 && b.kc <= 2048 && b.nc <= 16384, "{b:?}");
            }
            // Absurd tiles still give blocks of whole tiles.
            for (mr, nr) in [(5000, 7), (3, 40000)] {
                let b = Blocking::model(&caches, mr, nr, 4);
                assert!(b.mc.is_multiple_of(mr) && b.nc.is_multiple_of(nr), "{b:?}");
            }
        }
    }

    #[test]
    fn decodes_cpuid_leaf_4_layout() {
        // L1d: data, level 1, shared by 2; 64-byte lines, 1 partition, 8 ways, 64 sets.
        let eax = 1 | (1 << 5) | (1 << 14);
        let ebx = 63 | (7 << 22);
        let f = decode_cpuid_cache(eax, ebx, 63).unwrap();
        assert_eq!((f.level, f.data), (1, true));
        assert_eq!(f.cache, level(32 << 10, 2));
        // L3: unified, level 3, 16 ways, 32768 sets, shared by 16.
        let f = decode_cpuid_cache(3 | (3 << 5) | (15 << 14), 63 | (15 << 22), 32767).unwrap();
        assert_eq!((f.level, f.data), (3, true));
        assert_eq!(f.cache, level(32 << 20, 16));
        // Instruction caches are kept but marked; type 0 ends the list.
        assert!(!decode_cpuid_cache(2 | (1 << 5), ebx, 63).unwrap().data);
        assert!(decode_cpuid_cache(0, ebx, 63).is_none());
    }

    #[test]
    fn picks_data_levels_and_needs_l1_l2() {
        let found = [
            Found {
                level: 1,
                data: false,
                cache: level(64 << 10, 1),
            },
            Found {
                level: 1,
                data: true,
                cache: level(32 << 10, 1),
            },
            Found {
                level: 2,
                data: true,
                cache: level(1 << 20, 1),
            },
        ];
        let c = Caches::from_levels(&found, CacheSource::Sysfs).unwrap();
        assert_eq!((c.l1d.bytes, c.l2.bytes, c.l3), (32 << 10, 1 << 20, None));
        assert!(Caches::from_levels(&found[..2], CacheSource::Sysfs).is_none());
        // An absurd size is not believed.
        let absurd = [
            found[1],
            Found {
                level: 2,
                data: true,
                cache: level(0, 1),
            },
        ];
        assert!(Caches::from_levels(&absurd, CacheSource::Sysfs).is_none());
    }

    #[test]
    fn parses_sysfs_strings() {
        assert_eq!(parse_size("32K\n"), Some(32 << 10));
        assert_eq!(parse_size("32768K"), Some(32 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0-3,8-11"), Some(8));
        assert_eq!(count_cpu_list("0,2"), Some(2));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
        assert_eq!(count_cpu_list(""), None);
    }

    #[test]
    fn detection_is_plausible_and_prints() {
        let c = detected();
        assert!(plausible(c.l1d.bytes) && plausible(c.l2.bytes), "{c:?}");
        assert!(c.l1d.bytes <= c.l2.bytes, "{c:?}");
        let text = c.to_string();
        assert!(text.starts_with("L1d "), "{text}");
        println!("detected: {text}");
        assert_eq!(
            Caches::DEFAULT.to_string(),
            "L1d 32 KiB, L2 512 KiB, L3 2 MiB (defaults)"
        );
    }
}
