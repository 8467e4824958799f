//! Structured pruning: remove whole convolution channels and Dense units, so the pruned model
//! is simply a smaller dense model (no sparse kernel needed to run it faster).
//!
//! The criterion is Li et al.'s ("Pruning Filters for Efficient ConvNets", 2017): an output
//! channel (a convolution filter, or a Dense unit's weight row) with a small L1 norm contributes
//! little, so the `fraction` of channels with the smallest norms is removed from each prunable
//! layer — its weight rows and bias entries — together with the matching inputs of the layer
//! that consumes them (a convolution's input channels, or a Dense layer's columns; through a
//! `Flatten`, channel `c` of an `H×W` map is the block of columns `c·H·W .. (c+1)·H·W`).
//!
//! A layer is pruned only when its consumer is found through layers that keep channels apart
//! (activations, Dropout, max/average pooling, Flatten, global average pooling); anything else
//! in between (BatchNorm2d, Reshape, padding, a grouped convolution) leaves it whole, and the
//! last layer with weights (the model's outputs) is never pruned. The model is fine-tuned
//! afterwards to recover accuracy, as in the paper. A rebuilt Dense layer keeps its weights,
//! bias and activation but not an L1/L2 penalty (set one again if fine-tuning needs it).

use crate::conv::Conv2d;
use crate::error::{Result, config_err};
use crate::layers::Dense;
use crate::module::Module;
use crate::sequential::Sequential;
use ember_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// What [`prune_channels`] removed.
#[derive(Debug, Clone, PartialEq)]
pub struct ShrinkReport {
    /// (layer index, channels before, channels after) for each pruned layer.
    pub layers: Vec<(usize, usize, usize)>,
    /// Trainable parameter counts before and after.
    pub parameters: (usize, usize),
}

/// A layer with an output-channel axis we can cut.
enum Producer {
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    Dense {
        weight: Tensor,
        bias: Option<Tensor>,
    },
}

/// Whether a layer of this kind keeps channels apart (so a producer's channel `c` is still
/// channel `c` after it).
fn passes_channels(kind: &str) -> bool {
    matches!(
        kind,
        "ReLU"
            | "Sigmoid"
            | "Tanh"
            | "GELU"
            | "GELU(tanh)"
            | "Identity"
            | "LeakyReLU"
            | "Dropout"
            | "MaxPool2d"
            | "AvgPool2d"
    )
}

fn as_conv(layer: &dyn Module) -> Option<&Conv2d> {
    layer
        .as_any()
        .and_then(|a| a.downcast_ref::<Conv2d>())
        .filter(|c| c.options().groups == 1)
}

fn as_dense(layer: &dyn Module) -> Option<&Dense> {
    layer.as_any().and_then(|a| a.downcast_ref::<Dense>())
}

/// Index tensor (whole-number floats) on `device`.
fn index(ids: &[usize], device: Device) -> Result<Tensor> {
    let v: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
    Ok(Tensor::from_vec(v, vec![ids.len()], Device::Cpu)?.to_device(device)?)
}

/// Removes the `fraction` of output channels with the smallest L1 norms from every prunable
/// convolution and Dense layer of `network` (see the module docs), for per-example input shape
/// `input_shape`. Returns the smaller network (new layers; the others moved over unchanged).
pub fn prune_channels(
    network: Sequential,
    input_shape: &[usize],
    fraction: f64,
) -> Result<(Sequential, ShrinkReport)> {
    if !(0.0..1.0).contains(&fraction) {
        return config_err(format!(
            "prune_channels: fraction must be in [0, 1) (the share of channels removed), got \
             {fraction}"
        ));
    }
    let before = network.parameter_count();
    let layers = network.into_layers();
    // Per-example input shape of every layer.
    let mut shapes = Vec::with_capacity(layers.len() + 1);
    shapes.push(input_shape.to_vec());
    for l in &layers {
        let next = l.output_shape(shapes.last().map_or(&[][..], |s| s.as_slice()))?;
        shapes.push(next);
    }
    let mut params: Vec<Option<Producer>> = layers
        .iter()
        .map(|l| {
            if let Some(c) = as_conv(l.as_ref()) {
                Some(Producer::Conv {
                    weight: c.weight().detach(),
                    bias: c.bias().map(Tensor::detach),
                })
            } else {
                as_dense(l.as_ref()).map(|d| Producer::Dense {
                    weight: d.weight().detach(),
                    bias: d.bias().map(Tensor::detach),
                })
            }
        })
        .collect();
    let mut report = Vec::new();
    for i in 0..layers.len() {
        if params[i].is_none() {
            continue;
        }
        // Find the consumer and the spatial size of a Flatten on the way.
        let mut spatial = None;
        let mut consumer = None;
        for (j, l) in layers.iter().enumerate().skip(i + 1) {
            if params[j].is_some() {
                consumer = Some(j);
                break;
            }
            let kind = l.kind();
            if kind == "Flatten" || kind == "GlobalAvgPool2d" {
                // Input of the flatten: [C, H, W] → C blocks of H·W columns.
                let s = &shapes[j];
                let per: usize = if kind == "Flatten" {
                    s.iter().skip(1).product()
                } else {
                    1
                };
                if spatial.is_some() {
                    break;
                }
                spatial = Some(per);
                continue;
            }
            if !passes_channels(kind) {
                break;
            }
        }
        let Some(j) = consumer else { continue };
        // A convolution's consumer must see channels (no Flatten for conv → conv).
        let (weight, bias) = match &params[i] {
            Some(Producer::Conv { weight, bias }) | Some(Producer::Dense { weight, bias }) => {
                (weight.clone(), bias.clone())
            }
            None => continue,
        };
        let is_conv = matches!(params[i], Some(Producer::Conv { .. }));
        let consumer_is_conv = matches!(params[j], Some(Producer::Conv { .. }));
        if consumer_is_conv && (!is_conv || spatial.is_some()) {
            continue;
        }
        if (!is_conv && spatial.is_some()) || (is_conv && !consumer_is_conv && spatial.is_none()) {
            continue;
        }
        let units = weight.shape()[0];
        let keep_n = (((1.0 - fraction) * units as f64).round() as usize).clamp(1, units);
        if keep_n == units {
            continue;
        }
        let norms = weight
            .abs()?
            .reshape(vec![units, weight.elem_count() / units.max(1)])?
            .sum(&[1], false)?
            .to_vec::<f64>()?;
        let mut order: Vec<usize> = (0..units).collect();
        order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]).then(a.cmp(&b)));
        let mut keep: Vec<usize> = order[..keep_n].to_vec();
        keep.sort_unstable();
        let dev = weight.device();
        let rows = index(&keep, dev)?;
        let new_w = weight.index_select(&rows, 0)?;
        let new_b = match &bias {
            Some(b) => Some(b.index_select(&rows, 0)?),
            None => None,
        };
        params[i] = Some(if is_conv {
            Producer::Conv {
                weight: new_w,
                bias: new_b,
            }
        } else {
            Producer::Dense {
                weight: new_w,
                bias: new_b,
            }
        });
        // The consumer's inputs: channel c, or its block of columns after a Flatten.
        let cols: Vec<usize> = match spatial {
            Some(per) => keep.iter().flat_map(|&c| c * per..(c + 1) * per).collect(),
            None => keep.clone(),
        };
        let cols = index(&cols, dev)?;
        params[j] = match params[j].take() {
            Some(Producer::Conv { weight, bias }) => Some(Producer::Conv {
                weight: weight.index_select(&cols, 1)?,
                bias,
            }),
            Some(Producer::Dense { weight, bias }) => Some(Producer::Dense {
                weight: weight.index_select(&cols, 1)?,
                bias,
            }),
            None => None,
        };
        report.push((i, units, keep_n));
    }
    // Rebuild: new layers where the weights changed shape, the old ones elsewhere.
    let mut out = Sequential::new();
    let mut rng = StdRng::seed_from_u64(0);
    for (layer, p) in layers.into_iter().zip(params) {
        let changed = match &p {
            Some(Producer::Conv { weight, .. }) => {
                as_conv(layer.as_ref()).is_some_and(|c| c.weight().shape() != weight.shape())
            }
            Some(Producer::Dense { weight, .. }) => {
                as_dense(layer.as_ref()).is_some_and(|d| d.weight().shape() != weight.shape())
            }
            None => false,
        };
        if !changed {
            out.push_boxed(layer);
            continue;
        }
        match p {
            Some(Producer::Dense { weight, bias }) => {
                let act = as_dense(layer.as_ref()).map(Dense::activation);
                let act = act.unwrap_or(ember_core::Activation::None);
                out.push(Dense::from_tensors(
                    weight.as_variable(),
                    bias.map(|b| b.as_variable()),
                    act,
                )?);
            }
            Some(Producer::Conv { weight, bias }) => {
                let Some(old) = as_conv(layer.as_ref()) else {
                    out.push_boxed(layer);
                    continue;
                };
                let s = weight.shape().to_vec();
                let fresh =
                    Conv2d::with_options(s[1], s[0], old.kernel_size(), old.options(), &mut rng)?;
                ember_core::no_grad(|| -> Result<()> {
                    fresh.weight().assign(&weight)?;
                    if let (Some(fb), Some(b)) = (fresh.bias(), &bias) {
                        fb.assign(b)?;
                    }
                    Ok(())
                })?;
                out.push(fresh);
            }
            None => out.push_boxed(layer),
        }
    }
    let after = out.parameter_count();
    Ok((
        out,
        ShrinkReport {
            layers: report,
            parameters: (before, after),
        },
    ))
}
