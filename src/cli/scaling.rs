//! The input preprocessing a trained model expects, saved in its checkpoint.
//!
//! `ember train` scales features before training (standardisation fitted on the training rows,
//! or pixel values to [0, 1] for images). A model is only useful on new data scaled the same
//! way, so the scaling goes into the checkpoint's metadata (`ember.scaling`, JSON) and
//! `ember predict` / `ember evaluate` apply it to their input.

use ember_nn::data::{Scaler, Table};
use serde_json::{Value, json};

/// How features were scaled for training.
#[derive(Debug, Clone, PartialEq)]
pub enum Scaling {
    /// Used as they are (the synthetic data).
    None,
    /// `(x − mean) / std` per column, fitted on the training rows.
    Standard {
        /// Column means.
        mean: Vec<f64>,
        /// Column standard deviations.
        std: Vec<f64>,
    },
    /// Image pixels 0..=255 divided by 255 (the IDX loader already did it; a CSV of pixels
    /// gets it applied).
    Pixels,
}

impl Scaling {
    /// One line of JSON for the checkpoint header.
    pub fn to_json(&self) -> String {
        match self {
            Scaling::None => json!({"kind": "none"}),
            Scaling::Standard { mean, std } => {
                json!({"kind": "standard", "mean": mean, "std": std})
            }
            Scaling::Pixels => json!({"kind": "pixels"}),
        }
        .to_string()
    }

    /// Reads what [`Scaling::to_json`] wrote; `source` names the checkpoint in errors.
    pub fn from_json(text: &str, source: &str) -> Result<Scaling, String> {
        let bad = |why: &str| format!("{source}: ember.scaling metadata {why}");
        let v: Value = serde_json::from_str(text).map_err(|e| bad(&format!("is not JSON: {e}")))?;
        let numbers = |key: &str| -> Result<Vec<f64>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| bad(&format!("lacks the list '{key}'")))?
                .iter()
                .map(|x| {
                    x.as_f64()
                        .ok_or_else(|| bad(&format!("'{key}' holds a non-number")))
                })
                .collect()
        };
        match v.get("kind").and_then(Value::as_str) {
            Some("none") => Ok(Scaling::None),
            Some("pixels") => Ok(Scaling::Pixels),
            Some("standard") => {
                let (mean, std) = (numbers("mean")?, numbers("std")?);
                if mean.len() != std.len() || std.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
                    return Err(bad("has mean and std of different lengths or a std ≤ 0"));
                }
                Ok(Scaling::Standard { mean, std })
            }
            other => Err(bad(&format!("has an unknown kind {other:?}"))),
        }
    }

    /// Scales `table`'s features in place (`from_idx`: the pixels were already divided by
    /// 255 when loaded).
    pub fn apply(&self, table: &mut Table, from_idx: bool) -> Result<(), String> {
        match self {
            Scaling::None => Ok(()),
            Scaling::Pixels if from_idx => Ok(()),
            Scaling::Pixels => {
                table.features.iter_mut().for_each(|x| *x /= 255.0);
                Ok(())
            }
            Scaling::Standard { mean, std } => Scaler::Standard {
                mean: mean.clone(),
                std: std.clone(),
            }
            .transform(table)
            .map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_nonsense() {
        for s in [
            Scaling::None,
            Scaling::Pixels,
            Scaling::Standard {
                mean: vec![1.0, -2.5],
                std: vec![0.5, 3.0],
            },
        ] {
            assert_eq!(Scaling::from_json(&s.to_json(), "m").unwrap(), s);
        }
        assert!(
            Scaling::from_json("{\"kind\":\"standard\",\"mean\":[1],\"std\":[0]}", "m").is_err()
        );
        assert!(
            Scaling::from_json("{\"kind\":\"zscore\"}", "m")
                .unwrap_err()
                .contains("zscore")
        );
        assert!(
            Scaling::from_json("nope", "m.safetensors")
                .unwrap_err()
                .contains("m.safetensors")
        );
    }
}
