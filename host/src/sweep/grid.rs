//! A parameter grid: `--grid fast=2..30 --grid slow=10..200:5
//! --grid mode=a,b`, and every combination of it, numbered.

use std::str::FromStr;

use rust_decimal::Decimal;

/// The most combinations one sweep may have.
pub const MAX_COMBINATIONS: usize = 1_000_000;

/// Why a grid cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("`{axis}`: expected KEY=FROM..TO[:STEP] or KEY=A,B,...")]
    Syntax { axis: String },
    #[error("`{axis}`: {message}")]
    Range { axis: String, message: String },
    #[error("parameter `{key}` is given twice")]
    Repeated { key: String },
    #[error("{count} combinations: at most {MAX_COMBINATIONS} in one sweep (shard it, or narrow the grid)")]
    TooMany { count: u128 },
}

/// One parameter's values, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl FromStr for Axis {
    type Err = GridError;

    fn from_str(text: &str) -> Result<Self, GridError> {
        let axis = crate::runtime::bounded(text);
        let syntax = || GridError::Syntax { axis: axis.clone() };
        let (key, spec) = text.split_once('=').ok_or_else(syntax)?;
        let key = key.trim();
        if key.is_empty() || spec.trim().is_empty() {
            return Err(syntax());
        }
        let values = match spec.split_once("..") {
            Some((from, rest)) => {
                let (to, step) = rest.split_once(':').unwrap_or((rest, "1"));
                let number = |t: &str| Decimal::from_str(t.trim()).map_err(|_| syntax());
                range(number(from)?, number(to)?, number(step)?)
                    .map_err(|message| GridError::Range { axis: axis.clone(), message })?
            }
            None => spec.split(',').map(|v| v.trim().to_string()).collect(),
        };
        if values.iter().any(String::is_empty) {
            return Err(syntax());
        }
        Ok(Axis { key: key.to_string(), values })
    }
}

/// `from` to `to` inclusive, by `step`.
fn range(from: Decimal, to: Decimal, step: Decimal) -> Result<Vec<String>, String> {
    if step <= Decimal::ZERO {
        return Err(format!("the step must be positive, not {step}"));
    }
    if to < from {
        return Err(format!("{to} is below {from}"));
    }
    let count = ((to - from) / step).floor() + Decimal::ONE;
    if count > Decimal::from(MAX_COMBINATIONS) {
        return Err(format!("{count} values: at most {MAX_COMBINATIONS}"));
    }
    let mut values = Vec::new();
    let mut value = from;
    while value <= to {
        values.push(value.normalize().to_string());
        value += step;
    }
    Ok(values)
}

/// Every combination of some axes, the first axis varying slowest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    axes: Vec<Axis>,
    len: usize,
}

impl Grid {
    pub fn new(axes: Vec<Axis>) -> Result<Self, GridError> {
        for (i, axis) in axes.iter().enumerate() {
            if axes[..i].iter().any(|a| a.key == axis.key) {
                return Err(GridError::Repeated { key: axis.key.clone() });
            }
        }
        let count: u128 = axes.iter().map(|a| a.values.len() as u128).product();
        if count > MAX_COMBINATIONS as u128 {
            return Err(GridError::TooMany { count });
        }
        Ok(Self { len: count as usize, axes })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.axes.iter().map(|a| a.key.as_str())
    }

    /// Combination `index` (0-based) as `(key, value)` pairs.
    pub fn combination(&self, mut index: usize) -> Vec<(String, String)> {
        let mut picked = vec![(String::new(), String::new()); self.axes.len()];
        for (slot, axis) in picked.iter_mut().zip(&self.axes).rev() {
            let n = axis.values.len();
            *slot = (axis.key.clone(), axis.values[index % n].clone());
            index /= n;
        }
        picked
    }
}

/// `I/N`: shard I (0-based) of N takes the combinations whose index is I
/// modulo N, so shards are balanced and disjoint and together complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("expected I/N with 0 <= I < N, got `{}`", crate::runtime::bounded(text));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn takes(&self, combination: usize) -> bool {
        combination % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(text: &str) -> Result<Vec<String>, GridError> {
        text.parse::<Axis>().map(|a| a.values)
    }

    #[test]
    fn ranges_steps_and_lists() {
        assert_eq!(axis("fast=2..5").unwrap(), ["2", "3", "4", "5"]);
        assert_eq!(axis("slow=10..30:10").unwrap(), ["10", "20", "30"]);
        assert_eq!(axis("slow=10..25:10").unwrap(), ["10", "20"]);
        assert_eq!(axis("rate=0.1..0.3:0.1").unwrap(), ["0.1", "0.2", "0.3"]);
        assert_eq!(axis("mode=fast, slow").unwrap(), ["fast", "slow"]);
        assert_eq!(axis("n=7").unwrap(), ["7"]);
    }

    #[test]
    fn bad_axes_say_why() {
        for bad in ["fast", "=1..2", "fast=", "fast=a..b", "fast=1..2:x", "fast=1,,2"] {
            assert!(matches!(bad.parse::<Axis>(), Err(GridError::Syntax { .. })), "{bad}");
        }
        for bad in ["fast=5..1", "fast=1..5:0", "fast=1..5:-1", "fast=0..10000000"] {
            assert!(matches!(bad.parse::<Axis>(), Err(GridError::Range { .. })), "{bad}");
        }
        let axes = |texts: &[&str]| texts.iter().map(|t| t.parse().unwrap()).collect::<Vec<Axis>>();
        assert_eq!(Grid::new(axes(&["a=1..2", "a=3"])), Err(GridError::Repeated { key: "a".into() }));
        assert!(matches!(Grid::new(axes(&["a=1..1000", "b=1..1000", "c=1..2"])), Err(GridError::TooMany { .. })));
    }

    #[test]
    fn combinations_are_numbered_first_axis_slowest() {
        let grid = Grid::new(vec!["a=1..2".parse().unwrap(), "b=x,y,z".parse().unwrap()]).unwrap();
        assert_eq!(grid.len(), 6);
        let all: Vec<String> = (0..6).map(|i| format!("{:?}", grid.combination(i))).collect();
        assert_eq!(all[0], r#"[("a", "1"), ("b", "x")]"#);
        assert_eq!(all[2], r#"[("a", "1"), ("b", "z")]"#);
        assert_eq!(all[3], r#"[("a", "2"), ("b", "x")]"#);
    }

    #[test]
    fn shards_split_the_grid_exactly() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for combination in 0..100 {
            assert_eq!(shards.iter().filter(|s| s.takes(combination)).count(), 1);
        }
        for bad in ["3/3", "1/0", "x/2", "1", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
