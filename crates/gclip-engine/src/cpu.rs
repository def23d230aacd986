//! Runtime CPU-feature detection, so one binary picks the best kernels on
//! whatever x86-64 (or other) CPU it runs on.

use std::sync::OnceLock;

/// The instruction-set level a kernel is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no explicit SIMD.
    Scalar,
    /// AVX2 + FMA (x86-64-v3).
    Avx2,
    /// AVX-512F (+BW/VL for the int8 path).
    Avx512,
}

impl Isa {
    /// Short lowercase name, as accepted by `GCLIP_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// What the running CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// Best float ISA.
    pub isa: Isa,
    /// AVX512-VNNI (`vpdpbusd`) available, used by the int8 path.
    pub vnni: bool,
}

fn detect_raw() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl");
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let vnni = avx512 && std::arch::is_x86_feature_detected!("avx512vnni");
        let isa = if avx512 {
            Isa::Avx512
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::Scalar
        };
        CpuFeatures { isa, vnni }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        CpuFeatures {
            isa: Isa::Scalar,
            vnni: false,
        }
    }
}

/// Everything the hardware supports, ignoring `GCLIP_ISA`.
pub fn hardware() -> CpuFeatures {
    static HW: OnceLock<CpuFeatures> = OnceLock::new();
    *HW.get_or_init(detect_raw)
}

/// Features the engine uses: the hardware's, capped by the environment
/// variable `GCLIP_ISA` (`scalar`, `avx2`, `avx512`) so fallbacks can be
/// exercised on a fast machine. A request above the hardware is ignored.
pub fn features() -> CpuFeatures {
    static F: OnceLock<CpuFeatures> = OnceLock::new();
    *F.get_or_init(|| {
        let hw = hardware();
        let cap = match std::env::var("GCLIP_ISA").ok().as_deref() {
            Some("scalar") => Isa::Scalar,
            Some("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        let isa = hw.isa.min(cap);
        CpuFeatures {
            isa,
            vnni: hw.vnni && isa == Isa::Avx512,
        }
    })
}

/// The ISAs this machine can run, lowest first (for tests).
pub fn available_isas() -> Vec<Isa> {
    let best = hardware().isa;
    [Isa::Scalar, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&i| i <= best)
        .collect()
}
