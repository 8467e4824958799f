//! Checks, with no GPU, that the tensor-core GEMM really issues tensor-core instructions: its
//! CUBIN for sm_80 and sm_90a is disassembled with cuobjdump (from the nvidia-cuda-cuobjdump
//! wheel, found through `EMBER_CUOBJDUMP`, set by scripts/cuda-wheels.sh, or on PATH) and must
//! contain `HMMA`; the fp32 SGEMM must be built from `FFMA` and contain no `HMMA`.
//! (There is no wgmma kernel yet, so nothing here expects `HGMMA`.)

mod common;

use std::process::Command;

fn cuobjdump() -> Option<String> {
    if let Ok(p) = std::env::var("EMBER_CUOBJDUMP")
        && std::path::Path::new(&p).exists()
    {
        return Some(p);
    }
    Command::new("cuobjdump")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "cuobjdump".to_string())
}

fn sass_of(tool: &str, module: &str, arch: &str) -> String {
    let c = ember_cuda::compile_module(module, arch).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("ember-sass-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{module}.{arch}.cubin"));
    std::fs::write(&path, &c.cubin).expect("write cubin");
    let out = Command::new(tool)
        .arg("-sass")
        .arg(&path)
        .output()
        .expect("run cuobjdump");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "cuobjdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SASS of one function: from its `Function : <name>` header to the next header.
fn function_sass<'a>(sass: &'a str, name: &str) -> &'a str {
    let header = format!("Function : {name}\n");
    let start = sass
        .find(&header)
        .unwrap_or_else(|| panic!("no function {name} in the SASS dump"));
    let rest = &sass[start + header.len()..];
    let end = rest.find("Function : ").unwrap_or(rest.len());
    &rest[..end]
}

fn count(s: &str, op: &str) -> usize {
    s.split_whitespace()
        .filter(|w| w.starts_with(op) && w[op.len()..].starts_with(['.', ' ']) || *w == op)
        .count()
}

#[test]
fn tensor_core_gemm_uses_hmma_and_sgemm_uses_ffma() {
    if !common::nvrtc_or_skip("sass") {
        return;
    }
    let Some(tool) = cuobjdump() else {
        if std::env::var("EMBER_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
            panic!("EMBER_REQUIRE_NVRTC=1 but cuobjdump not found (source scripts/cuda-wheels.sh)");
        }
        println!("SKIPPED: sass: cuobjdump not found (source scripts/cuda-wheels.sh)");
        return;
    };
    for arch in ["sm_80", "sm_90a"] {
        let h = sass_of(&tool, "hgemm", arch);
        for k in ["hgemm_mma_bf16", "hgemm_mma_f16"] {
            let f = function_sass(&h, k);
            let hmma = count(f, "HMMA");
            let ldsm = count(f, "LDSM");
            let ldgsts = count(f, "LDGSTS");
            println!("{arch} {k}: {hmma} HMMA, {ldsm} LDSM, {ldgsts} LDGSTS");
            // 16 mma per 16-deep k step, 2 steps per 32-deep tile.
            assert!(hmma >= 32, "{arch} {k}: expected >= 32 HMMA, found {hmma}");
            assert!(ldsm > 0, "{arch} {k}: ldmatrix (LDSM) missing");
            assert!(ldgsts > 0, "{arch} {k}: cp.async (LDGSTS) missing");
        }
        let s = sass_of(&tool, "sgemm", arch);
        for k in ["sgemm_vec_128", "sgemm_regblock_128"] {
            let f = function_sass(&s, k);
            let ffma = count(f, "FFMA");
            println!("{arch} {k}: {ffma} FFMA");
            // 8 x 8 register tile x 8-deep k tile, fully unrolled.
            assert!(
                ffma >= 512,
                "{arch} {k}: expected >= 512 FFMA, found {ffma}"
            );
            assert_eq!(
                count(f, "HMMA"),
                0,
                "{arch} {k}: fp32 path must not use tensor cores"
            );
        }
    }
}
