//! `Sequential`: a stack of modules applied in order, with model-wide parameter names, a
//! Keras-like `summary()` table and a Mermaid diagram.
//!
//! Naming: the k-th Dense layer's parameters are `layers.{k}.weight` and `layers.{k}.bias`
//! (k counts Dense layers only, from 0). That is the key layout of a PyTorch `nn.Sequential` of
//! `nn.Linear`s with the activations folded in, so a checkpoint loads there by name. Any other
//! layer with state is named by its kind and its own counter, e.g. `batch_norm1d.0.weight`.

use crate::error::Result;
use crate::module::Module;
use ember_core::Tensor;

/// Layers applied one after the other.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
    /// `named_parameters()`, rebuilt whenever a layer is added: the training loop asks for it
    /// every step, and building the names each time cost ~8% of a small model's step.
    params: Vec<(String, Tensor)>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Sequential {
        Sequential {
            layers: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Appends a layer (builder style), Keras's `model.add(layer)`.
    #[allow(clippy::should_implement_trait)] // named after Keras's `add`, not `std::ops::Add`
    pub fn add(mut self, layer: impl Module + 'static) -> Sequential {
        self.push(layer);
        self
    }

    /// Appends a layer in place.
    pub fn push(&mut self, layer: impl Module + 'static) {
        self.layers.push(Box::new(layer));
        self.params = self.named(|l| l.parameters());
    }

    /// Appends an already boxed layer in place (what a model file's builder makes).
    pub fn push_boxed(&mut self, layer: Box<dyn Module>) {
        self.layers.push(layer);
        self.params = self.named(|l| l.parameters());
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Module>] {
        &self.layers
    }

    /// The layers, taken out of the stack (to rebuild it with some replaced).
    pub fn into_layers(self) -> Vec<Box<dyn Module>> {
        self.layers
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the stack has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The model-wide name prefix of each layer (`layers.{k}` for Dense, `{kind}.{j}` otherwise).
    pub fn layer_prefixes(&self) -> Vec<String> {
        let mut counts: std::collections::HashMap<&'static str, usize> = Default::default();
        self.layers
            .iter()
            .map(|layer| {
                let kind = layer.kind();
                let n = counts.entry(kind).or_insert(0);
                let prefix = if kind == "Dense" {
                    format!("layers.{n}")
                } else {
                    format!("{}.{n}", kind.to_ascii_lowercase())
                };
                *n += 1;
                prefix
            })
            .collect()
    }

    /// Every parameter with its model-wide name, in layer order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }

    /// Every parameter with its model-wide name, borrowed (no allocation).
    pub fn parameters_ref(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Every buffer with its model-wide name, in layer order.
    pub fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.named(|l| l.buffers())
    }

    fn named(&self, f: impl Fn(&dyn Module) -> Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, layer) in self.layer_prefixes().iter().zip(&self.layers) {
            for (name, t) in f(layer.as_ref()) {
                out.push((format!("{prefix}.{name}"), t));
            }
        }
        out
    }

    /// Total number of trainable parameters (elements).
    pub fn parameter_count(&self) -> usize {
        self.named_parameters()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum()
    }

    /// The sum of every layer's regularisation penalty, or `None` if no layer has one.
    pub fn regularization(&self) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for layer in &self.layers {
            if let Some(p) = layer.regularization_loss()? {
                total = Some(match total {
                    Some(t) => t.add(&p)?,
                    None => p,
                });
            }
        }
        Ok(total)
    }

    /// A Keras-like table: one row per layer with its output shape and parameter count, then
    /// the totals. `input_shape` excludes the batch dimension (e.g. `&[30]`).
    pub fn summary(&self, input_shape: &[usize]) -> Result<String> {
        let mut rows = Vec::new();
        let mut shape = input_shape.to_vec();
        for (prefix, layer) in self.layer_prefixes().iter().zip(&self.layers) {
            shape = layer.output_shape(&shape)?;
            let params: usize = layer.parameters().iter().map(|(_, t)| t.elem_count()).sum();
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            rows.push((
                format!("{prefix} ({})", layer.kind()),
                format!("(None, {})", dims.join(", ")),
                params,
            ));
        }
        let trainable = self.parameter_count();
        let frozen: usize = self
            .named_buffers()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum();
        let w = (
            rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(14) + 2,
            rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(12) + 2,
            10,
        );
        let line = |c: char| c.to_string().repeat(w.0 + w.1 + w.2);
        let mut s = String::from("Model: \"sequential\"\n");
        s += &line('_');
        s += &format!(
            "\n{:<a$}{:<b$}{:>c$}\n",
            "Layer (type)",
            "Output Shape",
            "Param #",
            a = w.0,
            b = w.1,
            c = w.2
        );
        s += &line('=');
        s.push('\n');
        for (i, (name, out, params)) in rows.iter().enumerate() {
            s += &format!(
                "{:<a$}{:<b$}{:>c$}\n",
                name,
                out,
                params,
                a = w.0,
                b = w.1,
                c = w.2
            );
            s += &line(if i + 1 == rows.len() { '=' } else { '_' });
            s.push('\n');
        }
        if rows.is_empty() {
            s += &line('=');
            s.push('\n');
        }
        s += &format!("Total params: {}\n", trainable + frozen);
        s += &format!("Trainable params: {trainable}\n");
        s += &format!("Non-trainable params: {frozen}\n");
        Ok(s)
    }

    /// The architecture as a Mermaid flowchart, one node per layer, top to bottom.
    pub fn to_mermaid(&self, input_shape: &[usize]) -> Result<String> {
        let fmt_shape = |s: &[usize]| {
            let d: Vec<String> = s.iter().map(|d| d.to_string()).collect();
            format!("[{}]", d.join(", "))
        };
        let mut s = String::from("flowchart TD\n");
        s += &format!("    input[\"Input {}\"]\n", fmt_shape(input_shape));
        let mut shape = input_shape.to_vec();
        let mut prev = "input".to_string();
        for (i, layer) in self.layers.iter().enumerate() {
            shape = layer.output_shape(&shape)?;
            let params: usize = layer.parameters().iter().map(|(_, t)| t.elem_count()).sum();
            let node = format!("l{i}");
            s += &format!(
                "    {node}[\"{}<br/>out {}, {params} params\"]\n",
                layer.describe(),
                fmt_shape(&shape)
            );
            s += &format!("    {prev} --> {node}\n");
            prev = node;
        }
        Ok(s)
    }
}

impl Module for Sequential {
    /// Threads the padding mask through the layers: the first layer that makes one (an
    /// `Embedding` with `mask_zero`) starts it, and each later layer reads or passes it on.
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        Ok(self.forward_masked(x, None, training)?.0)
    }

    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let mut h = x.clone();
        let mut m = mask.cloned();
        for layer in &self.layers {
            (h, m) = layer.forward_masked(&h, m.as_ref(), training)?;
        }
        Ok((h, m))
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.named_buffers()
    }

    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut shape = input.to_vec();
        for layer in &self.layers {
            shape = layer.output_shape(&shape)?;
        }
        Ok(shape)
    }

    fn regularization_loss(&self) -> Result<Option<Tensor>> {
        self.regularization()
    }
}
