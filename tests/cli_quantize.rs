//! `ember quantize`: an int8 copy of a trained model (dynamic, or static with `--calibrate`) that `ember evaluate` and `ember predict`
//! take like the f32 file (accuracy within half a point on the digits data, for an MLP and a
//! CNN), and clear refusals (a BatchNorm layer, an already quantized file, writing over the
//! input).

use std::path::Path;
use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the ember binary runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn accuracy(json: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    v["test_accuracy"].as_f64().expect("test_accuracy")
}

#[test]
fn a_quantized_digits_model_evaluates_like_the_f32_one() {
    let dir = std::env::temp_dir().join(format!("ember-cli-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f32_path = dir.join("digits.safetensors");
    let q_path = dir.join("digits-int8.safetensors");
    let (f, q) = (f32_path.to_str().unwrap(), q_path.to_str().unwrap());
    ok(&ember(&[
        "train",
        "--data",
        "data/digits.csv",
        "--hidden",
        "64",
        "--epochs",
        "10",
        "--save",
        f,
    ]));
    let text = ok(&ember(&["quantize", "--model", f, "--out", q]));
    assert!(text.contains("quantized"), "{text}");
    assert!(std::fs::metadata(q).unwrap().len() < std::fs::metadata(f).unwrap().len());
    let eval = |m: &str| {
        accuracy(&ok(&ember(&[
            "evaluate",
            "--model",
            m,
            "--data",
            "data/digits.csv",
            "--json",
        ])))
    };
    let (a32, a8) = (eval(f), eval(q));
    assert!(a32 > 0.9, "{a32}");
    assert!((a32 - a8).abs() <= 0.005, "f32 {a32} vs int8 {a8}");
    let pred = ok(&ember(&[
        "predict",
        "--model",
        q,
        "--data",
        "data/digits.csv",
    ]));
    assert!(pred.starts_with("row,class,p0"), "{pred}");
    // Refusals: quantizing the int8 file again, and writing over the input.
    let again = ember(&["quantize", "--model", q, "--out", &format!("{q}.2")]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already quantized"));
    let same = ember(&["quantize", "--model", f, "--out", f]);
    assert!(!same.status.success());
    std::fs::remove_dir_all(&dir).ok();
}

/// Trains `model_toml` on the 8×8 digits for `epochs` epochs into `dir/cnn.safetensors`.
fn train_image_model(dir: &Path, model_toml: &str, epochs: &str) -> std::path::PathBuf {
    let model = dir.join("model.toml");
    std::fs::write(&model, model_toml).unwrap();
    let ck = dir.join("cnn.safetensors");
    ok(&ember(&[
        "train",
        "--data",
        "data/digits.csv",
        "--model",
        model.to_str().unwrap(),
        "--epochs",
        epochs,
        "--save",
        ck.to_str().unwrap(),
    ]));
    ck
}

#[test]
fn a_quantized_cnn_evaluates_like_the_f32_one() {
    let dir = std::env::temp_dir().join(format!("ember-cli-quantize-cnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = train_image_model(
        &dir,
        "name = \"tiny\"\ninput_shape = [1, 8, 8]\n\
         optimizer = { name = \"adam\", lr = 0.003 }\n\
         [[layers]]\ntype = \"Conv2d\"\nout_channels = 16\nkernel_size = 3\npadding = \"same\"\nactivation = \"relu\"\n\
         [[layers]]\ntype = \"MaxPool2d\"\nkernel_size = 2\n\
         [[layers]]\ntype = \"Conv2d\"\nout_channels = 32\nkernel_size = 3\nactivation = \"relu\"\n\
         [[layers]]\ntype = \"Flatten\"\n[[layers]]\ntype = \"Dense\"\nunits = 10\n",
        "8",
    );
    let f = ck.to_str().unwrap();
    let eval = |m: &str| {
        accuracy(&ok(&ember(&[
            "evaluate",
            "--model",
            m,
            "--data",
            "data/digits.csv",
            "--json",
        ])))
    };
    let a32 = eval(f);
    assert!(a32 > 0.9, "the f32 CNN trained to {a32}");
    for extra in [&[][..], &["--calibrate", "data/digits.csv"][..]] {
        let q = dir.join("q.safetensors");
        let q = q.to_str().unwrap();
        let mut args = vec!["quantize", "--model", f, "--out", q];
        args.extend_from_slice(extra);
        let text = ok(&ember(&args));
        assert!(text.contains("Conv2d"), "{text}");
        let a8 = eval(q);
        // 1,797 rows: half a point is 9 images.
        assert!((a32 - a8).abs() <= 0.005, "{extra:?}: f32 {a32} vs int8 {a8}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_model_with_batch_norm_is_refused_naming_the_layer() {
    let dir = std::env::temp_dir().join(format!("ember-cli-quantize-bn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = train_image_model(
        &dir,
        "name = \"tiny\"\ninput_shape = [1, 8, 8]\n\
         [[layers]]\ntype = \"Conv2d\"\nout_channels = 2\nkernel_size = 3\n\
         [[layers]]\ntype = \"BatchNorm2d\"\n\
         [[layers]]\ntype = \"Flatten\"\n[[layers]]\ntype = \"Dense\"\nunits = 10\n",
        "1",
    );
    let q = dir.join("q.safetensors");
    let r = ember(&[
        "quantize",
        "--model",
        ck.to_str().unwrap(),
        "--out",
        q.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("BatchNorm2d"), "{err}");
    assert!(!Path::new(&q).exists(), "no half-written output");
    std::fs::remove_dir_all(&dir).ok();
}
